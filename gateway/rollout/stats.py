"""What the controller judges a step on: the detector worker's per-variant running sums (the
``VariantComparison`` arms in ``rollguard:{detectors}:state``, the same state ``GET /v1/detectors``
reads) minus the sums at the step's start (the baseline kept in the rollout state).

Metrics the worker computes, by plan metric name: ``<detector>_rate`` (each shortcut detector's
flag), ``reply_length_ratio`` (mean log characters), ``block_rate`` (final verdict block),
``upstream_error_rate`` (status >= 500 or an error code). From the worker's per-variant sums
(``rollguard:{detectors}:variant_sums``, ``gateway.worker.variant_sums``): ``latency_p95_ms`` and
``ttft_p95_ms`` (fixed log-bucket histograms, quantiles within 1 %; the step's values are the
histogram now minus the baseline's) and ``shadow_would_block_rate``. From the review queues
(``gateway.rollout.review_stats``): ``reviewer_regression_rate`` and
``reviewer_false_positive_rate``. Every catalog metric is thus judged live; ``dropped_metrics``
lists only a metric none of these sources computes (none today). A metric whose source has no
data for the step (no streamed reply for TTFT, no verdict yet) is ``no_data``: the step is
inconclusive, never pass.

Freshness: ``data_age_s`` is the time since the worker last counted an interaction (the newest
score of ``rollguard:{detectors}:seen``, the worker's processing clock in UTC epoch ms); None when it
never counted one. A stopped worker therefore makes every step stale after ``plan.max_data_age_s``
and the judge answers inconclusive, never pass.

Assignment counts for the sample-ratio check are the arms' counts of the ``error`` metric (every
processed interaction has one).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis

from detectors.rollout_judge import MetricData, Moments, StepData
from gateway.store.errors import redis_errors
from gateway.store.keys import SEEN_KEY, STATE_KEY, VARIANT_SUMS_KEY
from gateway.worker.variant_sums import values_of
from rollguard.rollout import RolloutPlan
from rollguard.types import SHORTCUT_DETECTORS

WORKER_METRIC = {
    "reply_length_ratio": "reply_log_chars",
    "block_rate": "blocked",
    "upstream_error_rate": "error",
}
"""Plan metric -> the worker's comparison metric (``<detector>_rate`` -> ``<detector>``)."""
ASSIGNMENT_METRIC = "error"
VARIANT_METRIC = {
    "latency_p95_ms": "latency_ms",
    "ttft_p95_ms": "ttft_ms",
    "shadow_would_block_rate": "shadow_would_block",
}
"""Plan metric -> its field in the worker's per-variant sums."""
REVIEW_METRICS = ("reviewer_regression_rate", "reviewer_false_positive_rate")
"""Plan metrics read from the review queues' verdicts (``gateway.rollout.review_stats``)."""

Sums = dict[str, dict[str, list[float]]]
"""worker metric -> arm (``control`` / ``canary``) -> [n, sum, sum of squares]."""


def worker_metric(name: str) -> str | None:
    """The worker's metric for plan metric ``name``, or None when the worker does not compute it."""
    if name in WORKER_METRIC:
        return WORKER_METRIC[name]
    base = name.removesuffix("_rate")
    return base if base != name and base in SHORTCUT_DETECTORS else None


def live_metric(name: str) -> bool:
    """True when the controller has a live source for plan metric ``name``."""
    return worker_metric(name) is not None or name in VARIANT_METRIC or name in REVIEW_METRICS


def judged_plan(plan: RolloutPlan) -> tuple[RolloutPlan, list[str]]:
    """``plan`` without the metrics no live source computes, and their names. Raises
    ``ValueError`` when none is left."""
    keep = tuple(m for m in plan.metrics if live_metric(m.name))
    dropped = [m.name for m in plan.metrics if not live_metric(m.name)]
    if not keep:
        raise ValueError("no live source computes any of the plan's metrics")
    return (plan if not dropped else plan.model_copy(update={"metrics": keep})), dropped


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The worker's cumulative sums for one canary variant at one moment, and its freshness.
    ``variants``: arm (``control`` / ``canary``) -> that variant's ``variant_sums`` entry."""

    sums: Sums
    data_age_s: float | None
    read_ms: int
    variants: dict[str, Any] = field(default_factory=dict)

    def to_baseline(self) -> dict[str, Any]:
        return {"sums": self.sums, "variants": self.variants, "read_ms": self.read_ms}


def sums_of(state: Mapping[str, Any], canary: str = "canary", control: str = "control") -> Sums:
    """Sum the worker's comparison arms over every (model, tenant) group whose canary variant is
    ``canary``. ``state``: the worker's ``WindowEngine.to_dict()``."""
    out: Sums = {}
    for key, comps in (state.get("comparisons") or {}).items():
        if f"variant={canary}" not in str(key).split("|"):
            continue
        for metric, comp in comps.items():
            arms = comp.get("arms") or {}
            slot = out.setdefault(metric, {"control": [0, 0.0, 0.0], "canary": [0, 0.0, 0.0]})
            for arm, variant in (("control", control), ("canary", canary)):
                a = arms.get(variant)
                if a:
                    slot[arm][0] += int(a["n"])
                    slot[arm][1] += float(a["s"])
                    slot[arm][2] += float(a["ss"])
    return out


async def read_snapshot(client: aioredis.Redis, canary: str = "canary", control: str = "control") -> Snapshot:
    """The worker's sums and the age of its newest processing. Raises ``StoreError``."""
    with redis_errors("cannot read the detector state"):
        async with client.pipeline(transaction=True) as pipe:
            pipe.get(STATE_KEY)
            pipe.zrevrange(SEEN_KEY, 0, 0, withscores=True)
            pipe.get(VARIANT_SUMS_KEY)
            raw, newest, raw_variants = await pipe.execute()
    now = int(time.time() * 1000)
    state = orjson.loads(raw) if raw else {}
    per_variant = orjson.loads(raw_variants) if raw_variants else {}
    variants = {"control": per_variant.get(control) or {}, "canary": per_variant.get(canary) or {}}
    age = (now - float(newest[0][1])) / 1000.0 if newest else None
    return Snapshot(sums_of(state, canary, control), None if age is None else max(age, 0.0), now, variants)


def _moments(cur: list[float], base: list[float] | None) -> Moments:
    b = base or [0, 0.0, 0.0]
    return Moments(int(cur[0] - b[0]), float(cur[1] - b[1]), float(cur[2] - b[2]))


def _variant_data(name: str, now: Mapping[str, Any], base: Mapping[str, Any]) -> MetricData:
    """One ``VARIANT_METRIC`` metric's step data: histogram values (p95) or moments (rate)."""
    f = VARIANT_METRIC[name]
    cur_c, cur_k = now.get("control") or {}, now.get("canary") or {}
    b_c, b_k = base.get("control") or {}, base.get("canary") or {}
    if f == "shadow_would_block":
        zero = [0, 0.0, 0.0]
        return MetricData(
            _moments(cur_c.get(f) or zero, b_c.get(f)), _moments(cur_k.get(f) or zero, b_k.get(f))
        )
    return MetricData(
        control_values=values_of(cur_c.get(f), b_c.get(f)), canary_values=values_of(cur_k.get(f), b_k.get(f))
    )


def step_data(
    plan: RolloutPlan,
    step: int,
    now: Snapshot,
    baseline: Mapping[str, Any],
    *,
    elapsed_s: float,
    flag_snapshot: Mapping[str, Any],
    reviews: Mapping[str, MetricData] | None = None,
) -> StepData:
    """The step's data for the judge: ``now`` minus ``baseline`` (``Snapshot.to_baseline()``),
    per plan metric the worker computes, plus ``reviews`` (the reviewer rates of the step,
    ``gateway.rollout.review_stats``)."""
    base: Sums = baseline.get("sums") or {}
    metrics: dict[str, MetricData] = {}
    for m in plan.metrics:
        if m.name in VARIANT_METRIC:
            metrics[m.name] = _variant_data(m.name, now.variants, baseline.get("variants") or {})
            continue
        if m.name in REVIEW_METRICS:
            if reviews and m.name in reviews:
                metrics[m.name] = reviews[m.name]
            continue
        wm = worker_metric(m.name)
        if wm is None or wm not in now.sums:
            continue
        cur, b = now.sums[wm], base.get(wm, {})
        metrics[m.name] = MetricData(
            _moments(cur["control"], b.get("control")), _moments(cur["canary"], b.get("canary"))
        )
    assign = now.sums.get(ASSIGNMENT_METRIC)
    b_assign = base.get(ASSIGNMENT_METRIC, {})
    n_control = _moments(assign["control"], b_assign.get("control")).n if assign else 0
    n_canary = _moments(assign["canary"], b_assign.get("canary")).n if assign else 0
    return StepData(
        step=step,
        assigned_control=n_control,
        assigned_canary=n_canary,
        metrics=metrics,
        elapsed_s=elapsed_s,
        data_age_s=now.data_age_s,
        flag_snapshot=dict(flag_snapshot),
    )
