"""The rollout console's view model: what ``/review/rollouts`` shows of one staged rollout, as
small frozen records, independent of who drives the rollout.

Who feeds it: the rollout controller (it knows the state, the step and when it started, and it
stores every ``detectors.rollout_judge.Judgment.to_dict()`` append-only) builds a ``RolloutView``
with ``view_from_evidence`` and serves it through the ``RolloutViews`` protocol; the console reads
it through that protocol only. ``NO_ROLLOUTS`` is the no-op default (the pages list nothing) and
``StaticRollouts`` an in-memory source (tests, ``rollguard demo --scenario rollout``).

Shapes and units: percents are the canary's share of traffic (0..100); times are epoch
milliseconds (``*_ms``) or seconds (``*_s``); a metric's ``effect``, ``interval`` and
``tolerance`` are on the metric's test scale as the judge reports them (difference of shares for
rates, difference of mean log characters for the reply length, share above the control's p95
minus 0.05 for p95 metrics; docs/rollouts.md). Non-finite numbers are None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from rollguard.rollout import RolloutPlan


class RolloutState(StrEnum):
    """The controller's states (issue 8): pending, running a step, awaiting a person's approval,
    paused, rolled back, completed."""

    PENDING = "pending"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One metric at one step: the step's last judgment of it. ``status``: ``fail`` | ``ok`` |
    ``no_breach`` | ``no_data`` (the judge's); arms' ``n`` are observations, means on the raw
    scale (share 0..1, log characters, exceedance share)."""

    step: int
    percent: float
    status: str
    effect: float | None
    lower: float | None
    upper: float | None
    tolerance: float | None
    control_mean: float | None
    canary_mean: float | None
    control_n: int
    canary_n: int
    always_valid_p: float | None = None


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One plan metric across the steps judged so far (``points``, oldest first; the last is the
    current step's)."""

    name: str
    kind: str
    direction: str
    scale: str
    points: tuple[MetricPoint, ...]

    @property
    def current(self) -> MetricPoint | None:
        return self.points[-1] if self.points else None


@dataclass(frozen=True, slots=True)
class SrmView:
    """The sample-ratio check of the current step: assignment counts, the configured canary share
    (0..1), Pearson's chi-square and its p, whether it was checked (expected counts >= 5) and
    whether it paused judging (``mismatch``)."""

    control: int
    canary: int
    expected_canary_share: float
    chi2: float | None
    p: float | None
    checked: bool
    mismatch: bool

    @property
    def observed_canary_share(self) -> float | None:
        total = self.control + self.canary
        return self.canary / total if total else None


@dataclass(frozen=True, slots=True)
class ReviewItemView:
    """A review item of the rollout's canary: where it is, its state and its verdicts
    (``verdicts``: reviewer -> label, empty when hidden from the viewer by blind review;
    ``label``: the final label once decided)."""

    id: str
    queue: str
    priority: str
    status: str
    source: str
    created_ms: int
    label: str | None = None
    verdicts: tuple[tuple[str, str], ...] = ()
    verdict_count: int = 0
    hidden: bool = False

    @property
    def url(self) -> str:
        return f"/review/queues/{self.queue}/items/{self.id}"


@dataclass(frozen=True, slots=True)
class RolloutView:
    """One rollout as the console shows it. ``step`` indexes ``steps``; ``percent`` is the canary
    share now (0 after a rollback); ``next_percent`` the next step's (None at the last);
    ``step_started_ms``/``now_ms`` give the time in step; ``outcome``/``reason``/``metric`` are the
    last judgment's; ``evidence_id`` names that judgment in the controller's evidence stream."""

    id: str
    flag: str
    subject: str
    state: RolloutState
    steps: tuple[float, ...]
    step: int
    percent: float
    next_percent: float | None
    step_started_ms: int
    now_ms: int
    auto_promote: bool = False
    outcome: str | None = None
    reason: str | None = None
    metric: str | None = None
    metrics: tuple[MetricRow, ...] = ()
    srm: SrmView | None = None
    review_items: tuple[ReviewItemView, ...] = ()
    evidence_id: str | None = None
    plan_version: str | None = None
    history: tuple[tuple[int, str, str], ...] = field(default=())
    """Per step judged so far: (step index, outcome, reason) of its last judgment."""

    @property
    def time_in_step_s(self) -> float:
        return max(0.0, (self.now_ms - self.step_started_ms) / 1000.0)

    @property
    def awaiting_approval(self) -> bool:
        return self.state is RolloutState.AWAITING_APPROVAL


class RolloutViews(Protocol):
    """Where the console reads rollouts from (the controller implements it)."""

    async def list_rollouts(self) -> Sequence[RolloutView]:
        """Every rollout, newest first."""
        ...

    async def get_rollout(self, rollout_id: str) -> RolloutView | None:
        """One rollout, or None when unknown."""
        ...


class StaticRollouts:
    """An in-memory ``RolloutViews`` over fixed views (tests, the demo report)."""

    def __init__(self, views: Sequence[RolloutView] = ()) -> None:
        self._views = {v.id: v for v in views}

    def put(self, view: RolloutView) -> None:
        self._views[view.id] = view

    async def list_rollouts(self) -> Sequence[RolloutView]:
        return list(self._views.values())

    async def get_rollout(self, rollout_id: str) -> RolloutView | None:
        return self._views.get(rollout_id)


NO_ROLLOUTS: RolloutViews = StaticRollouts()
"""The no-op source: no rollouts (the gateway runs no controller)."""


@dataclass(slots=True)
class RolloutViewSlot:
    """The console's handle on its source; the gateway swaps ``source`` in at startup when it runs a
    rollout controller (``router.rollout_views.source = controller_views``)."""

    source: RolloutViews = NO_ROLLOUTS


def _num(x: Any) -> float | None:
    if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(float(x)):
        return float(x)
    return None


def metric_point(record: Mapping[str, Any], m: Mapping[str, Any]) -> MetricPoint:
    """A ``MetricPoint`` from one judgment record (``Judgment.to_dict()``) and one of its
    ``metrics`` entries. Raises ``KeyError`` on a record of another shape."""
    lo, hi = [*(m.get("interval") or ()), None, None][:2]
    return MetricPoint(
        step=int(record["step"]),
        percent=float(record["percent"]),
        status=str(m["status"]),
        effect=_num(m.get("effect")),
        lower=_num(lo),
        upper=_num(hi),
        tolerance=_num(m.get("tolerance")),
        control_mean=_num(m["control"].get("mean")),
        canary_mean=_num(m["canary"].get("mean")),
        control_n=int(m["control"]["n"]),
        canary_n=int(m["canary"]["n"]),
        always_valid_p=_num(m.get("always_valid_p")),
    )


def srm_view(record: Mapping[str, Any]) -> SrmView:
    """The sample-ratio part of a judgment record; ``mismatch`` when the judge paused on it
    (chi-square and the always-valid split test agreeing, ``SrmCheck.mismatch``)."""
    s = record["srm"]
    return SrmView(
        control=int(s["control"]),
        canary=int(s["canary"]),
        expected_canary_share=float(s["expected_canary_share"]),
        chi2=_num(s.get("chi2")),
        p=_num(s.get("p")),
        checked=bool(s.get("checked")),
        mismatch=record.get("reason") == "srm",
    )


def last_per_step(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The last judgment record of each step, in step order (records oldest first)."""
    last: dict[int, Mapping[str, Any]] = {}
    for r in records:
        last[int(r["step"])] = r
    return [last[k] for k in sorted(last)]


def _subject(plan: RolloutPlan) -> str:
    s = plan.subject
    if getattr(s, "kind", "") == "policy":
        return f"policy {getattr(s, 'policy', '?')} (shadow -> enforce)"
    return f"model {getattr(s, 'control', '?')} -> {getattr(s, 'canary', '?')}"


def view_from_evidence(
    rollout_id: str,
    plan: RolloutPlan,
    *,
    state: RolloutState,
    step: int,
    step_started_ms: int,
    now_ms: int,
    records: Sequence[Mapping[str, Any]],
    percent: float | None = None,
    review_items: Sequence[ReviewItemView] = (),
    evidence_id: str | None = None,
) -> RolloutView:
    """Build the view of rollout ``rollout_id`` from its judgment records (each a
    ``Judgment.to_dict()``, oldest first; any number per step: the last of each step is plotted).
    ``step`` is the current step index into ``plan.steps``; ``percent`` the canary's share now
    (default: that step's; pass 0 after a rollback). Metrics are the plan's, in its order; a
    metric without a record yet has no points. Raises ``KeyError`` on records of another shape."""
    per_step = last_per_step(records)
    rows = []
    for spec in plan.metrics:
        points = []
        scale = ""
        for r in per_step:
            m = next((x for x in r.get("metrics", []) if x.get("metric") == spec.name), None)
            if m is not None:
                points.append(metric_point(r, m))
                scale = str(m.get("scale", ""))
        rows.append(MetricRow(spec.name, spec.kind, spec.direction, scale, tuple(points)))
    last = records[-1] if records else None
    cur = last if last is not None and int(last["step"]) == step else None
    steps = tuple(plan.steps)
    return RolloutView(
        id=rollout_id,
        flag=plan.flag,
        subject=_subject(plan),
        state=state,
        steps=steps,
        step=step,
        percent=steps[step] if percent is None else percent,
        next_percent=steps[step + 1] if step + 1 < len(steps) else None,
        step_started_ms=step_started_ms,
        now_ms=now_ms,
        auto_promote=plan.auto_promote,
        outcome=None if last is None else str(last["outcome"]),
        reason=None if last is None else str(last["reason"]),
        metric=None if last is None else last.get("metric"),
        metrics=tuple(rows),
        srm=None if cur is None else srm_view(cur),
        review_items=tuple(review_items),
        evidence_id=evidence_id,
        plan_version=plan.version(),
        history=tuple((int(r["step"]), str(r["outcome"]), str(r["reason"])) for r in per_step),
    )
