"""Rollout judgment streams are bounded (``gateway.rollout.repo``): the judgments stream keeps about
the newest ``judgments_kept``, the deciding judgments (the evidence of transitions) stay, and what
is read back still reproduces offline and still plots every step. Real store (the ``redis_url``
fixture), real judge records."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis

from detectors.rollout_judge import judge_step, step_data_of
from gateway.review.rollout_view import RolloutState, view_from_evidence
from gateway.rollout.repo import JUDGMENTS_KEPT, RolloutRepo
from gateway.rollout.views import JUDGMENTS_SHOWN
from gateway.store.keys import rollout_judgments
from tests.detectors.test_rollout_judge import _plan, _step

pytestmark = pytest.mark.integration


@pytest.fixture()
async def r(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def _record(step: int, elapsed: float, rng: np.random.Generator) -> dict[str, Any]:
    n = {0: (2700, 300), 1: (1500, 1500)}[step]  # the plan's 10 % and 50 % splits
    data = dataclasses.replace(_step(rng, n_control=n[0], n_canary=n[1], elapsed=elapsed), step=step)
    rec = judge_step(_plan(), data).to_dict()
    return {**rec, "rollout": "r1", "revision": step, "dropped_metrics": [], "at_ms": 0, "fence": 1}


async def test_judgments_are_trimmed_the_evidence_stays_and_reproduces(r: aioredis.Redis) -> None:
    """Defect: one judgment per look was appended forever (17,280 a day per rollout at 5 s)."""
    repo = RolloutRepo(r, judgments_kept=50)
    rng = np.random.default_rng(1)
    early = [_record(0, 10.0, rng) for _ in range(150)]
    assert {x["action"] for x in early} == {"wait"}  # under min_duration_s: wait
    decided = _record(0, 120.0, rng)
    assert decided["action"] == "promote"
    later = [_record(1, 10.0, rng) for _ in range(150)]
    assert {x["action"] for x in later} == {"wait"}
    for rec in early:
        await repo.append_judgment("r1", rec)
    evidence_id = await repo.append_judgment("r1", decided)
    for rec in later:
        await repo.append_judgment("r1", rec)

    kept = await r.xlen(rollout_judgments("r1"))
    assert 50 <= kept < 200, kept  # MAXLEN ~ 50 trims whole stream nodes (100 entries by default)
    read = await repo.judgments("r1", 20)
    assert len(read) == 21 and [x["step"] for x in read[:20]] == [1] * 20
    assert read[20]["id"] == evidence_id and read[20]["action"] == "promote"  # the transition's evidence
    ids = [x["id"] for x in read]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))), reverse=True)  # newest first

    plan = _plan()
    for rec in read:  # every judgment read back reproduces offline
        again = judge_step(plan, step_data_of(rec)).to_dict()
        assert again == {k: rec[k] for k in again}

    view = view_from_evidence(
        "r1",
        plan,
        state=RolloutState.RUNNING,
        step=1,
        step_started_ms=0,
        now_ms=1,
        records=list(reversed(await repo.judgments("r1", 10))),
    )
    assert [h[:2] for h in view.history] == [(0, "pass"), (1, "inconclusive")]


def test_the_console_reads_fewer_judgments_than_a_rollout_keeps() -> None:
    assert JUDGMENTS_SHOWN < JUDGMENTS_KEPT
