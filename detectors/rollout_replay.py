"""Offline replay of a staged rollout: the judge's own test harness (what ``rollguard rollout
replay`` runs). Pure: records in, a replay result out; no files, no clock.

1. ``score_records`` turns each arm's records (``rollguard detect`` shape: ``{"messages": [...],
   "completion": "..."}``, optional ``latency_ms``, ``ttft_ms``, ``error``, ``verdict``,
   ``would_block``, ``review_label``) into one value per record and metric, ONCE (the shortcut
   detectors are the expensive part); ``Pool`` keeps them as numpy columns (NaN = not measured).
2. ``replay`` simulates the plan: in each judged step every simulated request goes to the canary
   with the step's share (or the ``delivered_percent`` override, to simulate a broken split) and is
   answered by a record drawn with replacement from that arm's pool, all from
   ``numpy.random.Generator(PCG64(seed))``. Requests arrive at ``requests_per_s`` (simulated time,
   for ``min_duration_s``). Every ``judge_every`` canary requests the judge
   (``detectors.rollout_judge.judge_step``) looks at the step's data; a pass promotes (approved
   automatically), a fail or a sample-ratio pause ends the replay, and a step still inconclusive
   after ``max_canary_per_step`` canary requests ends it as ``paused`` (reason ``step_limit``).
   Each step starts with fresh data (the judge compares arms within a step).

Metrics the records cannot provide (no ``latency_ms`` in either file, say) are dropped from the
replayed plan and listed in ``dropped_metrics``: the replay judges what the records measure.
Same pools, plan, config and seed: the same result, to the last digit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.rollout_judge import Action, Judgment, MetricData, Moments, StepData, judge_step
from detectors.shortcuts import ShortcutDetectors
from rollguard.rollout import METRICS, RolloutPlan
from rollguard.types import SHORTCUT_DETECTORS, Signal

_NOT_ACCEPTABLE_FREE = ("acceptable", "detector_false_positive")


def _flag(record: Mapping[str, Any], key: str) -> float:
    if key not in record or record[key] is None:
        return math.nan
    return 1.0 if bool(record[key]) else 0.0


def _number(record: Mapping[str, Any], key: str) -> float:
    v = record.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def record_values(record: Mapping[str, Any], signals: Mapping[str, Signal]) -> dict[str, float]:
    """Every catalog metric's value for one scored record (NaN when the record does not carry it):
    detector flags 0/1, log reply characters, block / would-block / error flags, latency and time
    to first token in ms, reviewer labels (regression = anything but acceptable or detector false
    positive)."""
    out = {f"{d}_rate": (1.0 if signals[d].flagged else 0.0) for d in SHORTCUT_DETECTORS if d in signals}
    out["reply_length_ratio"] = math.log(max(len(str(record.get("completion") or "")), 1))
    verdict = record.get("verdict")
    out["block_rate"] = math.nan if verdict is None else float(verdict == "block")
    out["shadow_would_block_rate"] = _flag(record, "would_block")
    out["upstream_error_rate"] = 1.0 if record.get("error") else 0.0
    out["latency_p95_ms"] = _number(record, "latency_ms")
    out["ttft_p95_ms"] = _number(record, "ttft_ms")
    label = record.get("review_label")
    out["reviewer_regression_rate"] = math.nan if label is None else float(label not in _NOT_ACCEPTABLE_FREE)
    out["reviewer_false_positive_rate"] = (
        math.nan if label is None else float(label == "detector_false_positive")
    )
    return out


@dataclass(frozen=True, slots=True)
class Pool:
    """One arm's records as metric columns (``columns[name][i]`` = record i's value, NaN = not
    measured)."""

    columns: Mapping[str, np.ndarray]
    n: int

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, float]]) -> Pool:
        if not rows:
            raise ValueError("a pool needs at least one record")
        cols = {name: np.array([r.get(name, math.nan) for r in rows], dtype=float) for name in METRICS}
        return cls(cols, len(rows))

    def take(self, idx: Sequence[int] | np.ndarray) -> Pool:
        """The pool of rows ``idx`` (with repeats), e.g. to build a regressed canary."""
        ix = np.asarray(idx, dtype=int)
        return Pool({k: v[ix] for k, v in self.columns.items()}, int(ix.size))

    def concat(self, other: Pool) -> Pool:
        return Pool(
            {k: np.concatenate([v, other.columns[k]]) for k, v in self.columns.items()}, self.n + other.n
        )

    def measures(self, name: str) -> bool:
        """True when at least one record carries metric ``name``."""
        return bool(np.isfinite(self.columns[name]).any())


def validate_record(line_no: int, rec: Any) -> tuple[list[dict[str, Any]], str]:
    """``(messages, completion)`` of a record; raises ``ValueError("line N: ...")`` otherwise."""
    if not isinstance(rec, dict):
        raise ValueError(f"line {line_no}: expected a JSON object, got {type(rec).__name__}")
    messages, completion = rec.get("messages", []), rec.get("completion")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ValueError(f"line {line_no}: 'messages' must be a list of message objects")
    if not isinstance(completion, str):
        raise ValueError(f"line {line_no}: 'completion' must be a string")
    return messages, completion


def score_records(
    records: Sequence[Mapping[str, Any]], detectors: ShortcutDetectors, batch: int = 256
) -> Pool:
    """Run the shortcut detectors once over ``records`` and return their metric columns. Raises
    ``ValueError("line N: ...")`` on the first malformed record (N counts from 1), or when empty."""
    checked = [validate_record(i, r) for i, r in enumerate(records, start=1)]
    rows: list[dict[str, float]] = []
    for a in range(0, len(checked), batch):
        chunk = checked[a : a + batch]
        sigs = detectors.score_batch([c[0] for c in chunk], [c[1] for c in chunk])
        rows.extend(record_values(r, s) for r, s in zip(records[a : a + batch], sigs, strict=True))
    return Pool.of(rows)


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """Simulation knobs: ``judge_every`` canary requests between looks; ``requests_per_s``
    simulated arrivals (all arms); ``max_canary_per_step`` canary requests before an inconclusive
    step stops the replay; ``delivered_percent``: configured step percent -> the percent the
    simulated split really delivers (default: as configured)."""

    judge_every: int = 50
    requests_per_s: float = 10.0
    max_canary_per_step: int = 20_000
    delivered_percent: Mapping[float, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Arm:
    """The step's running data of one arm: moments per metric and p95 values."""

    n: int = 0
    moments: dict[str, Moments] = field(default_factory=dict)
    values: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, pool: Pool, idx: np.ndarray, names: Sequence[str], p95: set[str]) -> None:
        self.n += int(idx.size)
        for name in names:
            col = pool.columns[name][idx]
            col = col[np.isfinite(col)]
            self.moments[name] = self.moments.get(name, Moments()) + Moments.of(col)
            if name in p95:
                self.values.setdefault(name, []).append(col)

    def tuple_values(self, name: str) -> tuple[float, ...]:
        parts = self.values.get(name) or []
        return tuple(np.concatenate(parts).tolist()) if parts else ()


@dataclass(slots=True)
class StepResult:
    """One simulated step: its last judgment and the requests it saw."""

    step: int
    percent: float
    delivered_percent: float
    looks: int
    canary_requests: int
    control_requests: int
    judgment: Judgment

    def to_dict(self) -> dict[str, Any]:
        j = self.judgment
        return {
            "step": self.step,
            "percent": self.percent,
            "delivered_percent": self.delivered_percent,
            "outcome": j.outcome.value,
            "action": j.action.value,
            "reason": j.reason,
            "metric": j.metric,
            "looks": self.looks,
            "canary_requests": self.canary_requests,
            "control_requests": self.control_requests,
            "evidence": j.to_dict(),
        }


@dataclass(slots=True)
class ReplayResult:
    """``final``: ``completed`` | ``rolled_back`` | ``paused``; ``decided_after_canary_requests``:
    canary requests over all steps when the final decision was taken."""

    final: str
    reason: str
    metric: str | None
    decided_after_canary_requests: int
    seed: int
    plan_version: str
    dropped_metrics: list[str]
    steps: list[StepResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "final": self.final,
            "reason": self.reason,
            "metric": self.metric,
            "decided_after_canary_requests": self.decided_after_canary_requests,
            "seed": self.seed,
            "plan_version": self.plan_version,
            "dropped_metrics": self.dropped_metrics,
            "steps": [s.to_dict() for s in self.steps],
        }


def replayable_plan(plan: RolloutPlan, control: Pool, canary: Pool) -> tuple[RolloutPlan, list[str]]:
    """``plan`` without the metrics the pools cannot measure (both arms need values), and their
    names. Raises ``ValueError`` when no metric is left."""
    keep = [m for m in plan.metrics if control.measures(m.name) and canary.measures(m.name)]
    dropped = [m.name for m in plan.metrics if m not in keep]
    if not keep:
        raise ValueError("the records measure none of the plan's metrics")
    if not dropped:
        return plan, []
    return plan.model_copy(update={"metrics": tuple(keep)}), dropped


def _step_data(plan: RolloutPlan, step: int, arms: tuple[_Arm, _Arm], p95: set[str], t_s: float) -> StepData:
    ctrl, can = arms
    names = [m.name for m in plan.metrics]
    metrics = {
        name: MetricData(
            ctrl.moments.get(name, Moments()),
            can.moments.get(name, Moments()),
            ctrl.tuple_values(name) if name in p95 else (),
            can.tuple_values(name) if name in p95 else (),
        )
        for name in names
    }
    snapshot = {"flag": plan.flag, "canary_percent": plan.steps[step], "source": "replay"}
    return StepData(step, ctrl.n, can.n, metrics, t_s, 0.0, snapshot)


def _run_step(
    plan: RolloutPlan, pools: tuple[Pool, Pool], step: int, cfg: ReplayConfig, rng: np.random.Generator
) -> tuple[StepResult, int]:
    """Simulate one step until its judgment is not ``wait`` or the step limit; returns the result
    and the canary requests of the deciding look."""
    percent = plan.steps[step]
    share = cfg.delivered_percent.get(percent, percent) / 100.0
    names = [m.name for m in plan.metrics]
    p95 = {m.name for m in plan.metrics if m.info.estimator == "p95"}
    arms = (_Arm(), _Arm())
    looks = 0
    while True:
        # requests until the next look: a geometric number per canary request (stream order does
        # not matter within a look, only the counts and the drawn records)
        gaps = rng.geometric(share, size=cfg.judge_every) if share < 1 else np.ones(cfg.judge_every, int)
        n_control = int(gaps.sum()) - cfg.judge_every
        arms[0].add(pools[0], rng.integers(0, pools[0].n, size=n_control), names, p95)
        arms[1].add(pools[1], rng.integers(0, pools[1].n, size=cfg.judge_every), names, p95)
        looks += 1
        elapsed_s = (arms[0].n + arms[1].n) / cfg.requests_per_s
        j = judge_step(plan, _step_data(plan, step, arms, p95, elapsed_s))
        if j.action is not Action.WAIT or arms[1].n >= cfg.max_canary_per_step:
            res = StepResult(step, percent, round(share * 100, 4), looks, arms[1].n, arms[0].n, j)
            return res, arms[1].n


def replay(
    plan: RolloutPlan, control: Pool, canary: Pool, seed: int = 0, config: ReplayConfig | None = None
) -> ReplayResult:
    """Simulate ``plan`` over the two pools (module docstring). Raises ``ValueError`` when the
    pools measure none of the plan's metrics."""
    cfg = config or ReplayConfig()
    judged, dropped = replayable_plan(plan, control, canary)
    rng = np.random.Generator(np.random.PCG64(seed))
    steps: list[StepResult] = []
    seen = 0
    for k in range(len(judged.judged_steps)):
        res, n_canary = _run_step(judged, (control, canary), k, cfg, rng)
        steps.append(res)
        seen += n_canary
        j = res.judgment
        if j.action is Action.ROLLBACK:
            return ReplayResult(
                "rolled_back", j.reason, j.metric, seen, seed, judged.version(), dropped, steps
            )
        if j.action is not Action.PROMOTE:
            reason = j.reason if j.action is Action.PAUSE else "step_limit"
            return ReplayResult("paused", reason, j.metric, seen, seed, judged.version(), dropped, steps)
    return ReplayResult("completed", "passed", None, seen, seed, judged.version(), dropped, steps)
