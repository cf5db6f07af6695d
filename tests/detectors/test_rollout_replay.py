"""Offline replay of staged rollouts over the shipped traffic (issue 8 items 8 and the must-holds
1-3): A/A completes, +5 points of refusals roll back early, 30 % longer replies pause, a broken
split is stopped by the sample-ratio check. 100 seeded replays each (seeds 0..99)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from detectors.rollout_replay import Pool, ReplayConfig, ReplayResult, replay, score_records
from rollguard.rollout import RolloutPlan, default_plan

from . import rollout_data as D

SEEDS = range(100)


def _many(
    plan: RolloutPlan, control: Pool, canary: Pool, cfg: ReplayConfig | None = None
) -> list[ReplayResult]:
    return [replay(plan, control, canary, seed=s, config=cfg) for s in SEEDS]


def _ten_percent() -> RolloutPlan:
    return default_plan().model_copy(update={"steps": (10.0, 25.0, 50.0, 100.0)})


@pytest.mark.slow
def test_aa_every_step_passes_in_95_of_100_replays() -> None:
    runs = _many(default_plan(), D.base(), D.base())
    completed = [r for r in runs if r.final == "completed"]
    assert len(completed) >= 95, Counter((r.final, r.reason) for r in runs)
    for r in completed:
        assert [s.judgment.outcome.value for s in r.steps] == ["pass"] * 4
    assert all(r.final != "rolled_back" for r in runs)
    assert runs[0].dropped_metrics == ["latency_p95_ms"]  # the shipped replies carry no latency


def test_refusal_canary_rolls_back_within_2000_canary_requests() -> None:
    canary = D.refusal_canary(0.05)
    assert canary.columns["refusal_rate"].mean() - D.base().columns["refusal_rate"].mean() == pytest.approx(
        0.05, abs=1e-3
    )
    runs = _many(_ten_percent(), D.base(), canary)
    caught = [r for r in runs if r.final == "rolled_back" and r.decided_after_canary_requests <= 2000]
    assert len(caught) >= 80, Counter((r.final, r.metric) for r in runs)
    assert {r.metric for r in caught} == {"refusal_rate"}


@pytest.mark.slow
def test_thirty_percent_longer_replies_pause_on_the_signal() -> None:
    runs = _many(default_plan(), D.base(), D.longer())
    paused = [r for r in runs if r.final == "paused" and r.metric == "reply_length_ratio"]
    assert len(paused) >= 80, Counter((r.final, r.metric) for r in runs)
    assert all(r.final != "completed" for r in runs)
    last = paused[0].steps[-1].judgment
    (m,) = [m for m in last.metrics if m.name == "reply_length_ratio"]
    assert m.status == "fail" and m.extra["length_ratio"] is not None and m.extra["length_ratio"] > 1.15


def test_a_10_90_split_delivering_20_80_is_stopped_by_the_sample_ratio_check() -> None:
    cfg = ReplayConfig(delivered_percent={10.0: 20.0})
    runs = _many(_ten_percent(), D.base(), D.base(), cfg)
    assert all((r.final, r.reason) == ("paused", "srm") for r in runs)
    assert max(r.decided_after_canary_requests for r in runs) <= 200
    srm = runs[0].steps[0].judgment.srm
    assert srm.expected_canary_share == 0.1 and srm.p < 0.001


def test_same_inputs_and_seed_give_the_same_output() -> None:
    plan = _ten_percent()
    a = json.dumps(replay(plan, D.base(), D.refusal_canary(0.05), seed=3).to_dict(), allow_nan=False)
    b = json.dumps(replay(plan, D.base(), D.refusal_canary(0.05), seed=3).to_dict(), allow_nan=False)
    c = json.dumps(replay(plan, D.base(), D.refusal_canary(0.05), seed=4).to_dict(), allow_nan=False)
    assert a == b and a != c
    out = json.loads(a)
    assert (
        out["final"] == "rolled_back" and out["steps"][-1]["evidence"]["plan_version"] == out["plan_version"]
    )


def test_records_without_a_metric_drop_it_and_bad_records_name_the_line() -> None:
    recs = [
        {
            "messages": [{"role": "user", "content": f"q{i}"}],
            "completion": "A fine answer.",
            "latency_ms": 100 + i,
        }
        for i in range(50)
    ]
    pool = score_records(recs, D.detectors())
    assert pool.measures("latency_p95_ms") and not pool.measures("block_rate")
    assert np.nanmean(pool.columns["upstream_error_rate"]) == 0.0
    with pytest.raises(ValueError, match="line 2: 'completion' must be a string"):
        score_records([recs[0], {"messages": [], "completion": 3}], D.detectors())
