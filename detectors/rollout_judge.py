"""The rollout judge: one rollout step's data in, a pass / fail / inconclusive judgment with its
evidence out. Pure (no clock, no I/O); the controller feeds it the step's counts and stores the
returned ``Judgment.to_dict()`` append-only. Same input, same judgment.

Per metric of the plan (``rollguard.rollout``), an always-valid one-sided test of "the canary is
no worse than the control by more than the tolerance" (``detectors.sequential``: the one-sided
mSPRT of Johari et al. 2017 with a half-normal mixture), at ``plan.alpha / len(metrics)``
(Bonferroni). On the metric's scale, with ``sign`` = +1 for ``increase_is_bad`` and -1 otherwise,
``effect = canary - control`` and the bad excess ``sign * effect - sign * tolerance``:

* ``rate`` metrics (0/1 per request): difference of proportions; each arm's variance of the mean
  is ``p~(1 - p~) / n`` with ``p~ = (s + 0.5) / (n + 1)`` (a continuity-corrected plug-in so that an
  arm with no events still has a variance). A relative tolerance is ``tolerance * control mean``.
* ``log_ratio`` (reply length): difference of mean log characters (the log of the ratio of the
  geometric-mean lengths), Welch variance; the tolerance on this scale is ``log(1 + tolerance)``.
* ``p95`` (latency, time to first token): the threshold ``t`` is the control's empirical p95
  times ``1 + tolerance`` (relative) or plus ``tolerance`` ms (absolute); the tested quantity is the
  share of canary requests above ``t`` minus 0.05, against 0. If the canary's p95 is at most ``t``
  that share is at most 5 %, so a breach means the canary's p95 exceeds the tolerance-adjusted
  control p95 (a sequential binomial test on the indicator "above the control's p95", which needs
  no bootstrap). The control's p95 is treated as known: it needs ``P95_MIN_CONTROL`` requests.

Metric status: ``fail`` when the always-valid interval lies wholly on the bad side of the
tolerance (lower bound of the bad excess > 0); ``ok`` when it lies wholly on the good side;
``no_breach`` when it straddles the tolerance; ``no_data`` when an arm has fewer than
``MIN_LOOK`` observations (``P95_MIN_CONTROL`` control requests for p95 metrics).

Step outcome, first rule that applies:

1. ``inconclusive`` / ``wait`` / ``stale``: no data was ever processed (``data_age_s`` None) or the
   newest is older than ``plan.max_data_age_s`` (detector worker down): never pass on it.
2. ``inconclusive`` / ``pause`` / ``srm``: sample-ratio mismatch, Pearson's chi-square goodness of
   fit of the assignment counts against the step's weights (``scipy.stats.chisquare``) with
   p < ``plan.srm_p`` (0.001, as GrowthBook and the SRM literature, Fabijan et al. KDD 2019),
   confirmed by the always-valid split test at the same level (``SrmCheck.mismatch``): the
   split is broken, so no metric is trusted.
3. ``fail`` / ``rollback``: a guardrail metric failed (``metric`` names the first; every failed one
   is in ``failed``). 4. ``fail`` / ``pause``: a signal metric failed.
5. ``inconclusive`` / ``wait``: an arm below ``plan.min_samples`` requests, the step younger than
   ``plan.min_duration_s``, or a metric with ``no_data``.
6. ``pass`` / ``promote``: otherwise (``needs_approval`` unless the plan auto-promotes). A pass
   thus needs the minimum sample and duration, fresh data, data on every metric and no failure;
   a metric whose interval still straddles its tolerance does not block it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import special

from detectors import sequential
from rollguard.rollout import MetricSpec, RolloutPlan

MIN_LOOK = 30
"""Observations per arm before a metric is tested (the normal approximation's floor)."""
P95_MIN_CONTROL = 100
"""Control requests needed to estimate the control's p95."""
TAU_FLOOR = {"rate": 0.01, "log_ratio": math.log(1.1), "p95": 0.05}
"""Smallest mixing scale per estimator; otherwise tau = |tolerance| on the test scale, so the
mixture is most powerful for regressions of about twice the tolerance (Johari et al. 2017 tune
tau to the expected effect size)."""


class Outcome(StrEnum):
    PASS = "pass"  # noqa: S105 (an outcome name, not a password)
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class Action(StrEnum):
    """What the controller does with a judgment."""

    PROMOTE = "promote"
    WAIT = "wait"
    PAUSE = "pause"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class Moments:
    """Running sums of one arm of one metric: count, sum, sum of squares."""

    n: int = 0
    s: float = 0.0
    ss: float = 0.0

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> Moments:
        a = np.asarray(values, dtype=float)
        return cls(int(a.size), float(a.sum()), float((a * a).sum()))

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.s + other.s, self.ss + other.ss)

    @property
    def mean(self) -> float:
        return sequential.mean_of(self.n, self.s)

    @property
    def var(self) -> float:
        """Sample variance (n - 1 denominator); 0 below two observations."""
        return sequential.var_of(self.n, self.s, self.ss)


@dataclass(frozen=True, slots=True)
class MetricData:
    """One metric's data in the step: ``Moments`` per arm (``rate``, ``log_ratio``), or for ``p95``
    metrics the raw values per arm (ms)."""

    control: Moments = Moments()
    canary: Moments = Moments()
    control_values: tuple[float, ...] = ()
    canary_values: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class StepData:
    """What the controller knows of the running step. ``step``: index into ``plan.steps``;
    ``assigned_*``: requests the flag assigned to each arm in this step (sample-ratio check);
    ``metrics``: name -> data (a plan metric missing here has no data); ``elapsed_s``: seconds
    since the step started; ``data_age_s``: seconds since the newest judged record was produced
    (None: nothing processed yet); ``flag_snapshot``: the flag state as read (kept as evidence)."""

    step: int
    assigned_control: int
    assigned_canary: int
    metrics: Mapping[str, MetricData]
    elapsed_s: float
    data_age_s: float | None
    flag_snapshot: Mapping[str, Any] = field(default_factory=dict)


def _num(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def _arm(m: Moments) -> dict[str, Any]:
    """An arm in the evidence: n and mean, and the exact sums that reproduce the test."""
    return {"n": m.n, "mean": _num(m.mean), "sum": m.s, "sum_sq": m.ss}


@dataclass(frozen=True, slots=True)
class MetricEvidence:
    """One metric's test: the arms' sums, effect, tolerance, interval (one-sided bounds at
    ``alpha`` each), the breach statistic log Lambda+ and its threshold log(1/alpha), on the
    metric's test scale (``scale``); ``extra`` holds p95 thresholds and the length ratio. For p95
    metrics the arms are the exceedance indicators (control: the 5 % reference)."""

    name: str
    kind: str
    direction: str
    scale: str
    status: str
    control: Moments
    canary: Moments
    effect: float
    tolerance: float
    lower: float
    upper: float
    statistic: float
    threshold: float
    always_valid_p: float
    alpha: float
    tau: float
    extra: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.name,
            "kind": self.kind,
            "direction": self.direction,
            "scale": self.scale,
            "status": self.status,
            "control": _arm(self.control),
            "canary": _arm(self.canary),
            "effect": _num(self.effect),
            "tolerance": _num(self.tolerance),
            "interval": [_num(self.lower), _num(self.upper)],
            "statistic": _num(self.statistic),
            "threshold": _num(self.threshold),
            "always_valid_p": _num(self.always_valid_p),
            "alpha": self.alpha,
            "tau": _num(self.tau),
            **({"extra": self.extra} if self.extra else {}),
        }


def _rate_var(m: Moments) -> float:
    p = (m.s + 0.5) / (m.n + 1.0)
    return p * (1.0 - p) / m.n


def _p95_inputs(spec: MetricSpec, data: MetricData) -> tuple[Moments, Moments, dict[str, float | None]]:
    ctrl = np.asarray(data.control_values, dtype=float)
    q = float(np.quantile(ctrl, 0.95))
    t = q * (1.0 + spec.tolerance) if spec.tolerance_type == "relative" else q + spec.tolerance
    can = np.asarray(data.canary_values, dtype=float)
    exceed = Moments.of((can > t).astype(float))
    base = Moments(exceed.n, 0.05 * exceed.n, 0.05 * exceed.n)
    extra = {
        "control_p95_ms": _num(q),
        "canary_p95_ms": _num(float(np.quantile(can, 0.95))) if can.size else None,
        "threshold_ms": _num(t),
        "canary_share_above_threshold": _num(exceed.mean),
    }
    return base, exceed, extra


def _no_data(spec: MetricSpec, alpha: float, c: Moments, k: Moments, scale: str) -> MetricEvidence:
    nan = math.nan
    return MetricEvidence(
        spec.name, spec.kind, spec.direction, scale, "no_data", c, k,
        nan, nan, nan, nan, nan, math.log(1 / alpha), nan, alpha, nan,
    )  # fmt: skip


def evaluate_metric(spec: MetricSpec, data: MetricData | None, alpha: float) -> MetricEvidence:
    """The always-valid one-sided test of one metric at level ``alpha`` (module docstring)."""
    est = spec.info.estimator
    extra: dict[str, float | None] = {}
    data = data or MetricData()
    if est == "p95":
        scale = "canary share above the tolerance-adjusted control p95, minus 0.05"
        n_ctrl = len(data.control_values)
        if n_ctrl < P95_MIN_CONTROL or len(data.canary_values) < MIN_LOOK:
            return _no_data(spec, alpha, Moments(n_ctrl), Moments(len(data.canary_values)), scale)
        c, k, extra = _p95_inputs(spec, data)
        v, tol = _rate_var(k), 0.0
    else:
        c, k = data.control, data.canary
        scale = "difference of shares" if est == "rate" else "difference of mean log characters"
        if min(c.n, k.n) < MIN_LOOK:
            return _no_data(spec, alpha, c, k, scale)
        if est == "rate":
            v = _rate_var(c) + _rate_var(k)
            tol = spec.tolerance * c.mean if spec.tolerance_type == "relative" else spec.tolerance
        else:
            v = max(c.var / c.n + k.var / k.n, 1e-12)
            tol = math.log1p(spec.tolerance)
    sign = 1.0 if spec.direction == "increase_is_bad" else -1.0
    effect = k.mean - c.mean
    tau = max(abs(tol), TAU_FLOOR[est])
    w = sequential.one_sided_halfwidth(v, tau * tau, alpha)
    excess = sign * (effect - tol)
    stat = sequential.log_one_sided_lr(excess, v, tau * tau)
    status = "fail" if excess - w > 0 else "ok" if excess + w < 0 else "no_breach"
    if est == "log_ratio":
        extra = {"length_ratio": _num(math.exp(effect)), "tolerance_ratio": _num(math.exp(tol))}
    return MetricEvidence(
        spec.name, spec.kind, spec.direction, scale, status, c, k,
        effect, tol, effect - w, effect + w, stat, math.log(1 / alpha), min(1.0, math.exp(-stat)),
        alpha, tau, extra,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SrmCheck:
    """Sample-ratio check: assignment counts, the canary's configured share, Pearson's chi-square
    and its p, and the always-valid log Bayes factor of the split (``log_bf``); ``checked`` False
    when an expected count is under 5 (the chi-square approximation's rule)."""

    control: int
    canary: int
    expected_canary_share: float
    chi2: float
    p: float
    log_bf: float
    checked: bool

    def mismatch(self, p_floor: float) -> bool:
        """True when the chi-square p is below ``p_floor`` and the sequential test agrees at the
        same level (``log_bf >= log(1 / p_floor)``): the chi-square alone is a fixed-sample test,
        and looked at every few dozen requests it pauses honest splits (3 of 100 A/A rollouts
        measured, docs/rollouts.md); the always-valid test bounds that at ``p_floor`` per step."""
        return self.checked and self.p < p_floor and self.log_bf >= math.log(1.0 / p_floor)

    def to_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "canary": self.canary,
            "expected_canary_share": self.expected_canary_share,
            "chi2": _num(self.chi2),
            "p": self.p,
            "log_bf": _num(self.log_bf),
            "checked": self.checked,
        }


def srm_check(control: int, canary: int, canary_share: float) -> SrmCheck:
    """Pearson's chi-square goodness of fit of ``[control, canary]`` assignment counts against the
    configured split, 1 degree of freedom: the statistic and p of ``scipy.stats.chisquare``
    (computed directly with ``scipy.special.chdtrc``, 50 times faster per look; a test pins the
    two together), and ``sequential.log_split_bayes_factor`` on the same counts."""
    total = control + canary
    exp = (total * (1.0 - canary_share), total * canary_share)
    if min(exp) < 5:
        return SrmCheck(control, canary, canary_share, 0.0, 1.0, 0.0, False)
    chi2 = (control - exp[0]) ** 2 / exp[0] + (canary - exp[1]) ** 2 / exp[1]
    log_bf = sequential.log_split_bayes_factor(canary, total, canary_share)
    return SrmCheck(control, canary, canary_share, chi2, float(special.chdtrc(1, chi2)), log_bf, True)


@dataclass(frozen=True, slots=True)
class Judgment:
    """The judgment of one look at one step, with everything needed to reproduce it offline."""

    step: int
    percent: float
    outcome: Outcome
    action: Action
    reason: str
    metric: str | None
    failed: tuple[str, ...]
    needs_approval: bool
    metrics: tuple[MetricEvidence, ...]
    srm: SrmCheck
    elapsed_s: float
    data_age_s: float | None
    plan_version: str
    alpha: float
    metric_alpha: float
    flag_snapshot: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable evidence record (non-finite numbers become null)."""
        return {
            "step": self.step,
            "percent": self.percent,
            "outcome": self.outcome.value,
            "action": self.action.value,
            "reason": self.reason,
            "metric": self.metric,
            "failed": list(self.failed),
            "needs_approval": self.needs_approval,
            "n": {"control": self.srm.control, "canary": self.srm.canary},
            "metrics": [m.to_dict() for m in self.metrics],
            "srm": self.srm.to_dict(),
            "elapsed_s": round(self.elapsed_s, 3),
            "data_age_s": None if self.data_age_s is None else round(self.data_age_s, 3),
            "plan_version": self.plan_version,
            "alpha": self.alpha,
            "metric_alpha": self.metric_alpha,
            "flag_snapshot": dict(self.flag_snapshot),
        }


def _decide(plan: RolloutPlan, data: StepData, ev: Sequence[MetricEvidence], srm: SrmCheck) -> tuple[
    Outcome, Action, str, str | None, tuple[str, ...]
]:  # fmt: skip
    if data.data_age_s is None or data.data_age_s > plan.max_data_age_s:
        return Outcome.INCONCLUSIVE, Action.WAIT, "stale", None, ()
    if srm.mismatch(plan.srm_p):
        return Outcome.INCONCLUSIVE, Action.PAUSE, "srm", None, ()
    failed = tuple(e.name for e in ev if e.status == "fail")
    guard = [e.name for e in ev if e.status == "fail" and e.kind == "guardrail"]
    if guard:
        return Outcome.FAIL, Action.ROLLBACK, "guardrail_breach", guard[0], failed
    if failed:
        return Outcome.FAIL, Action.PAUSE, "signal_breach", failed[0], failed
    if min(data.assigned_control, data.assigned_canary) < plan.min_samples:
        return Outcome.INCONCLUSIVE, Action.WAIT, "min_samples", None, ()
    if data.elapsed_s < plan.min_duration_s:
        return Outcome.INCONCLUSIVE, Action.WAIT, "min_duration", None, ()
    missing = [e.name for e in ev if e.status == "no_data"]
    if missing:
        return Outcome.INCONCLUSIVE, Action.WAIT, "no_data", missing[0], ()
    return Outcome.PASS, Action.PROMOTE, "passed", None, ()


def judge_step(plan: RolloutPlan, data: StepData) -> Judgment:
    """Judge one look at step ``data.step`` of ``plan`` (module docstring for the rules). Raises
    ``ValueError`` when ``data.step`` is not a judged step of the plan (the last, 100 %, is not)."""
    if not 0 <= data.step < len(plan.judged_steps):
        raise ValueError(
            f"step {data.step} is not a judged step of the plan (0..{len(plan.judged_steps) - 1})"
        )
    percent = plan.steps[data.step]
    a = plan.metric_alpha
    ev = tuple(evaluate_metric(spec, data.metrics.get(spec.name), a) for spec in plan.metrics)
    srm = srm_check(data.assigned_control, data.assigned_canary, percent / 100.0)
    outcome, action, reason, metric, failed = _decide(plan, data, ev, srm)
    return Judgment(
        step=data.step,
        percent=percent,
        outcome=outcome,
        action=action,
        reason=reason,
        metric=metric,
        failed=failed,
        needs_approval=outcome is Outcome.PASS and not plan.auto_promote,
        metrics=ev,
        srm=srm,
        elapsed_s=data.elapsed_s,
        data_age_s=data.data_age_s,
        plan_version=plan.version(),
        alpha=plan.alpha,
        metric_alpha=a,
        flag_snapshot=dict(data.flag_snapshot),
    )


def step_data_of(record: Mapping[str, Any]) -> StepData:
    """The ``StepData`` a stored ``Judgment.to_dict()`` record was judged on, rebuilt from its
    per-arm sums, so ``judge_step(plan, step_data_of(rec)).to_dict() == rec`` for the plan named by
    ``rec["plan_version"]``. p95 metrics are left out (the record keeps their thresholds and
    exceedance counts, not the raw latencies), so they come back as ``no_data``. Raises
    ``KeyError`` / ``TypeError`` on a record of another shape."""

    def arm(d: Mapping[str, Any]) -> Moments:
        return Moments(int(d["n"]), float(d["sum"]), float(d["sum_sq"]))

    metrics = {
        m["metric"]: MetricData(arm(m["control"]), arm(m["canary"]))
        for m in record["metrics"]
        if not str(m["scale"]).startswith("canary share above")
    }
    return StepData(
        step=int(record["step"]),
        assigned_control=int(record["n"]["control"]),
        assigned_canary=int(record["n"]["canary"]),
        metrics=metrics,
        elapsed_s=float(record["elapsed_s"]),
        data_age_s=None if record["data_age_s"] is None else float(record["data_age_s"]),
        flag_snapshot=dict(record["flag_snapshot"]),
    )
