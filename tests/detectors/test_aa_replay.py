"""Must hold 3: an A/A replay of 20,000 shipped interactions in two arms raises no alert at the
default settings (every window detector, every group, the variant comparison)."""

from __future__ import annotations

import pytest

from detectors.engine import EngineConfig
from detectors.reference_model import ReferenceModel
from detectors.shortcuts import ShortcutDetectors
from gateway.tools import eval as E
from gateway.tools import shipped


@pytest.mark.slow
def test_must_hold_3_aa_replay_20000_no_alert(
    detectors: ShortcutDetectors, reference: ReferenceModel
) -> None:
    exchanges = (
        shipped.hh_exchanges()
        + shipped.arena_answers()
        + shipped.oasst_outputs()
        + shipped.xstest_completions()
    )
    pool = E.score_pool(exchanges, detectors, reference)
    assert len(pool) > 5000
    res = E.replay(E.aa_stream(pool, 20_000, seed=11), EngineConfig())
    assert res.n == 20_000
    assert [a.to_dict() for _, a in res.alerts] == []
