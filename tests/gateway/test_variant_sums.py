"""The worker's per-variant histograms: the documented 1 % error bound and exact subtraction."""

from __future__ import annotations

import numpy as np

from gateway.worker.variant_sums import MAX_BUCKET, VariantSums, bucket_of, bucket_value, fold, values_of


def test_every_value_is_represented_within_one_percent() -> None:
    rng = np.random.default_rng(7)
    xs = np.exp(rng.uniform(0.0, np.log(3_600_000.0), 20_000))  # 1 ms .. 1 h
    rel = [abs(bucket_value(bucket_of(float(x))) - x) / x for x in xs]
    assert max(rel) <= 1.02**0.5 - 1 + 1e-12
    assert bucket_of(0.2) == 0 and bucket_of(1e12) == MAX_BUCKET


def test_a_step_is_now_minus_the_baseline_exactly() -> None:
    sums: VariantSums = {}
    for ms in (100.0, 200.0):
        fold(sums, {"metadata": {"variant": "canary"}, "latency_ms": ms})
    base = {k: dict(v) for k, v in sums["canary"].items() if k == "latency_ms"}
    for ms in (300.0, 300.0, 5000.0):
        fold(sums, {"metadata": {"variant": "canary"}, "latency_ms": ms})
    fold(sums, {"metadata": {"variant": "canary"}, "latency_ms": "slow"})  # not a number: not counted
    got = values_of(sums["canary"]["latency_ms"], base["latency_ms"])
    assert len(got) == 3 and abs(got[0] - 300.0) / 300.0 < 0.01 and abs(got[2] - 5000.0) / 5000.0 < 0.01
    assert sums["canary"]["shadow_would_block"][0] == 6


def test_every_catalog_metric_has_a_live_source_so_the_default_plan_drops_none() -> None:
    from gateway.rollout.stats import judged_plan, live_metric
    from rollguard.rollout import METRICS, default_plan

    assert [m for m in METRICS if not live_metric(m)] == []
    plan, dropped = judged_plan(default_plan())
    assert dropped == [] and plan == default_plan()
