"""What the controller judges a step on: the detector worker's per-variant running sums (the
``VariantComparison`` arms in ``rollguard:detectors:state``, the same state ``GET /v1/detectors``
reads) minus the sums at the step's start (the baseline kept in the rollout state).

Metrics the worker computes, by plan metric name: ``<detector>_rate`` (each shortcut detector's
flag), ``reply_length_ratio`` (mean log characters), ``block_rate`` (final verdict block),
``upstream_error_rate`` (status >= 500 or an error code). The others (``latency_p95_ms``,
``ttft_p95_ms``, ``shadow_would_block_rate``, the reviewer rates) are not in the worker's state:
the controller judges without them and lists them as ``dropped_metrics`` in every judgment
(the replay does the same for metrics its records cannot measure).

Freshness: ``data_age_s`` is the time since the worker last counted an interaction (the newest
score of ``rollguard:detectors:seen``, the worker's processing clock in UTC epoch ms); None when it
never counted one. A stopped worker therefore makes every step stale after ``plan.max_data_age_s``
and the judge answers inconclusive, never pass.

Assignment counts for the sample-ratio check are the arms' counts of the ``error`` metric (every
processed interaction has one).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from detectors.rollout_judge import MetricData, Moments, StepData
from gateway.store.errors import redis_errors
from gateway.store.keys import SEEN_KEY, STATE_KEY
from rollguard.rollout import RolloutPlan
from rollguard.types import SHORTCUT_DETECTORS

WORKER_METRIC = {
    "reply_length_ratio": "reply_log_chars",
    "block_rate": "blocked",
    "upstream_error_rate": "error",
}
"""Plan metric -> the worker's comparison metric (``<detector>_rate`` -> ``<detector>``)."""
ASSIGNMENT_METRIC = "error"

Sums = dict[str, dict[str, list[float]]]
"""worker metric -> arm (``control`` / ``canary``) -> [n, sum, sum of squares]."""


def worker_metric(name: str) -> str | None:
    """The worker's metric for plan metric ``name``, or None when the worker does not compute it."""
    if name in WORKER_METRIC:
        return WORKER_METRIC[name]
    base = name.removesuffix("_rate")
    return base if base != name and base in SHORTCUT_DETECTORS else None


def judged_plan(plan: RolloutPlan) -> tuple[RolloutPlan, list[str]]:
    """``plan`` without the metrics the worker does not compute, and their names. Raises
    ``ValueError`` when none is left."""
    keep = tuple(m for m in plan.metrics if worker_metric(m.name) is not None)
    dropped = [m.name for m in plan.metrics if worker_metric(m.name) is None]
    if not keep:
        raise ValueError("the detector worker computes none of the plan's metrics")
    return (plan if not dropped else plan.model_copy(update={"metrics": keep})), dropped


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The worker's cumulative sums for one canary variant at one moment, and its freshness."""

    sums: Sums
    data_age_s: float | None
    read_ms: int

    def to_baseline(self) -> dict[str, Any]:
        return {"sums": self.sums, "read_ms": self.read_ms}


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
            raw, newest = await pipe.execute()
    now = int(time.time() * 1000)
    state = orjson.loads(raw) if raw else {}
    age = (now - float(newest[0][1])) / 1000.0 if newest else None
    return Snapshot(sums_of(state, canary, control), None if age is None else max(age, 0.0), now)


def _moments(cur: list[float], base: list[float] | None) -> Moments:
    b = base or [0, 0.0, 0.0]
    return Moments(int(cur[0] - b[0]), float(cur[1] - b[1]), float(cur[2] - b[2]))


def step_data(
    plan: RolloutPlan,
    step: int,
    now: Snapshot,
    baseline: Mapping[str, Any],
    *,
    elapsed_s: float,
    flag_snapshot: Mapping[str, Any],
) -> StepData:
    """The step's data for the judge: ``now`` minus ``baseline`` (``Snapshot.to_baseline()``),
    per plan metric the worker computes."""
    base: Sums = baseline.get("sums") or {}
    metrics: dict[str, MetricData] = {}
    for m in plan.metrics:
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
