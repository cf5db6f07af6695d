"""Rollout plans: what a staged rollout ramps, in which steps, and which metrics judge each step.

A plan is pure data (pydantic); the judge (``detectors.rollout_judge``) reads it, the controller
(gateway) persists and drives it. YAML shape (every field but ``flag`` has a default)::

    rollout:
      subject: {kind: model, control: chat-v1, canary: chat-v2}   # or
      # subject: {kind: policy, policy: pii}                      # shadow -> enforce x% -> 100 %
      flag: model-rollout
      steps: [1, 5, 25, 50, 100]      # canary percent; strictly increasing, the last is 100
      min_samples: 1000               # per arm and step (canary and control requests)
      min_duration_s: 600             # per step, seconds
      auto_promote: false             # true: a passed step promotes without a person
      alpha: 0.05                     # false-alarm budget of one step, split over the metrics
      max_data_age_s: 120             # judged data older than this is stale (inconclusive)
      metrics:
        - {name: refusal_rate, direction: increase_is_bad, tolerance: 0.01, kind: guardrail}
        - {name: reply_length_ratio, direction: increase_is_bad, tolerance: 0.2,
           tolerance_type: relative, kind: signal}

Semantics:

* ``steps``: the canary's share of traffic, in percent, per rollout step. The last step (100 %) is
  the completed rollout: it is not judged (there is no control arm left to compare with).
* A metric's ``tolerance`` is the regression the plan accepts before the metric fails:
  ``increase_is_bad`` needs ``tolerance >= 0`` (the canary may be at most ``tolerance`` above the
  control), ``decrease_is_bad`` needs ``tolerance <= 0`` (at most ``|tolerance|`` below).
  ``absolute`` tolerances are in the metric's unit (rate points 0..1, milliseconds);
  ``relative`` ones are a fraction of the control's value (0.2 = 20 % worse).
  ``reply_length_ratio`` is a ratio of geometric-mean reply lengths, so only ``relative``.
* ``kind``: a failed ``guardrail`` rolls the canary back, a failed ``signal`` pauses the rollout
  (GrowthBook safe rollouts' guardrail/signal split).
* ``alpha`` is split evenly over the metrics (Bonferroni): each metric's one-sided sequential
  test runs at ``alpha / len(metrics)``, so the probability that any metric of a step fails while
  every metric is within its tolerance is at most ``alpha`` (Bonferroni's inequality holds for
  dependent tests too).

Errors: ``parse_plan`` raises ``rollguard.errors.ConfigError`` with one line naming the field
(``rollout.metrics[2].tolerance: ...``); ``validate_against`` returns such lines for names the
plan does not know by itself (flags, model aliases, policies).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rollguard.errors import ConfigError
from rollguard.types import SHORTCUT_DETECTORS

Direction = Literal["increase_is_bad", "decrease_is_bad"]
ToleranceType = Literal["absolute", "relative"]
MetricKind = Literal["guardrail", "signal"]
Estimator = Literal["rate", "log_ratio", "p95"]

"""The per-interaction detectors of ``detectors.shortcuts.DETECTORS`` (rollguard may not import
detectors; a test pins the two lists together)."""


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """A metric the judge can compute. ``estimator``: ``rate`` (mean of 0/1 per request),
    ``log_ratio`` (mean of log reply characters: the difference is the log of the ratio of the
    geometric-mean lengths), ``p95`` (95th percentile, tested through the share of canary requests
    above the control's tolerance-adjusted p95); ``unit`` of absolute tolerances; ``source``: the
    record field or signal it is computed from."""

    name: str
    estimator: Estimator
    unit: str
    source: str
    description: str


def _catalog() -> dict[str, MetricInfo]:
    out = {
        f"{d}_rate": MetricInfo(
            f"{d}_rate", "rate", "share", f"signals.{d}", f"share of replies the {d} detector flags"
        )
        for d in SHORTCUT_DETECTORS
    }
    extra = (
        MetricInfo(
            "reply_length_ratio", "log_ratio", "ratio", "completion", "canary/control geometric-mean length"
        ),
        MetricInfo("block_rate", "rate", "share", "verdict", "share of requests a policy blocks"),
        MetricInfo(
            "shadow_would_block_rate", "rate", "share", "would_block", "share a shadow policy would block"
        ),
        MetricInfo("upstream_error_rate", "rate", "share", "error", "share of requests the upstream failed"),
        MetricInfo("latency_p95_ms", "p95", "ms", "latency_ms", "95th percentile of request latency"),
        MetricInfo("ttft_p95_ms", "p95", "ms", "ttft_ms", "95th percentile of time to first token"),
        MetricInfo(
            "reviewer_regression_rate",
            "rate",
            "share",
            "review_label",
            "share of reviewed replies a reviewer labelled not acceptable",
        ),
        MetricInfo(
            "reviewer_false_positive_rate",
            "rate",
            "share",
            "review_label",
            "share of reviewed policy flags a reviewer labelled a false positive",
        ),
    )
    out.update({m.name: m for m in extra})
    return out


METRICS: dict[str, MetricInfo] = _catalog()
"""Every metric name a plan may use, with how it is estimated."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSubject(_Strict):
    """Ramp traffic from the ``control`` model alias to the ``canary`` alias."""

    kind: Literal["model"] = "model"
    control: str = Field(min_length=1)
    canary: str = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> ModelSubject:
        if self.control == self.canary:
            raise ValueError("canary must differ from control")
        return self


class PolicySubject(_Strict):
    """Ramp one configured policy (same id) from shadow to enforce: the canary arm enforces it,
    the control arm runs it in shadow."""

    kind: Literal["policy"] = "policy"
    policy: str = Field(min_length=1)


class MetricSpec(_Strict):
    """One judged metric (see the module docstring for the tolerance sign rule)."""

    name: str
    direction: Direction = "increase_is_bad"
    tolerance_type: ToleranceType = "absolute"
    tolerance: float
    kind: MetricKind = "guardrail"

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r} (known: {', '.join(sorted(METRICS))})")
        return v

    @field_validator("tolerance")
    @classmethod
    def _sign(cls, v: float, info: ValidationInfo) -> float:
        direction, ttype, name = (info.data.get(k) for k in ("direction", "tolerance_type", "name"))
        if direction == "increase_is_bad" and v < 0:
            raise ValueError("must be >= 0 when direction is increase_is_bad (it points the wrong way)")
        if direction == "decrease_is_bad" and v > 0:
            raise ValueError("must be <= 0 when direction is decrease_is_bad (it points the wrong way)")
        estimator = METRICS[name].estimator if name in METRICS else None
        if ttype == "relative" and abs(v) >= 10:
            raise ValueError("a relative tolerance is a fraction (0.2 = 20 %), not a percent")
        if estimator == "p95" and direction != "increase_is_bad":
            raise ValueError(f"{name} is judged with direction increase_is_bad only")
        if estimator == "log_ratio" and ttype != "relative":
            raise ValueError(f"{name} takes tolerance_type relative (0.2 = 20 % longer)")
        if estimator == "log_ratio" and v <= -1:
            raise ValueError("a relative length tolerance must be above -1")
        if estimator == "rate" and ttype == "absolute" and abs(v) >= 1:
            raise ValueError("an absolute rate tolerance is a share in [0, 1), e.g. 0.02")
        return v

    @property
    def info(self) -> MetricInfo:
        return METRICS[self.name]


Subject = Annotated[ModelSubject | PolicySubject, Field(discriminator="kind")]


class RolloutPlan(_Strict):
    """A staged rollout (see the module docstring)."""

    subject: Subject = Field(default_factory=lambda: ModelSubject(control="control", canary="canary"))
    flag: str = Field(min_length=1)
    steps: tuple[float, ...] = (1.0, 5.0, 25.0, 50.0, 100.0)
    min_samples: int = Field(default=1000, ge=10, description="requests per arm and step")
    min_duration_s: float = Field(default=600.0, ge=0, description="seconds per step")
    auto_promote: bool = False
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    srm_p: float = Field(default=0.001, gt=0, lt=0.5, description="sample-ratio chi-square p floor")
    max_data_age_s: float = Field(default=120.0, gt=0, description="seconds; older data is stale")
    metrics: tuple[MetricSpec, ...] = Field(default_factory=lambda: default_metrics())

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if len(v) < 2:
            raise ValueError("needs at least one judged step and the final 100")
        for i, (a, b) in enumerate(itertools.pairwise(v)):
            if not b > a:
                raise ValueError(f"steps must be strictly increasing ({a} then {b} at index {i + 1})")
        if v[0] <= 0:
            raise ValueError("the first step must be above 0 percent")
        if v[-1] != 100:
            raise ValueError("the last step must be 100 (the completed rollout)")
        return v

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: tuple[MetricSpec, ...]) -> tuple[MetricSpec, ...]:
        if not v:
            raise ValueError("at least one metric is needed")
        names = [m.name for m in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"metric listed twice: {', '.join(dup)}")
        return v

    @property
    def judged_steps(self) -> tuple[float, ...]:
        """The steps the judge decides on (all but the final 100 %)."""
        return self.steps[:-1]

    @property
    def metric_alpha(self) -> float:
        """Each metric's one-sided false-alarm level: ``alpha / len(metrics)`` (Bonferroni)."""
        return self.alpha / len(self.metrics)

    def version(self) -> str:
        """``sha256:<12 hex>`` of the plan's canonical JSON: names the plan in every judgment."""
        raw = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:12]


def default_metrics() -> tuple[MetricSpec, ...]:
    """The shipped metric set: behaviour regressions that users feel are guardrails (refusals,
    sycophancy, upstream errors), style drifts are signals. Tolerances are in rate points."""
    g: MetricKind = "guardrail"
    s: MetricKind = "signal"
    rows: tuple[tuple[str, float, ToleranceType, MetricKind], ...] = (
        ("refusal_rate", 0.01, "absolute", g),
        ("sycophancy_rate", 0.01, "absolute", g),
        ("upstream_error_rate", 0.01, "absolute", g),
        ("hedging_rate", 0.02, "absolute", s),
        ("evasion_rate", 0.02, "absolute", s),
        ("repetition_rate", 0.02, "absolute", s),
        ("reply_length_ratio", 0.15, "relative", s),
        ("latency_p95_ms", 0.25, "relative", s),
    )
    return tuple(
        MetricSpec(name=n, direction="increase_is_bad", tolerance=t, tolerance_type=tt, kind=k)
        for n, t, tt, k in rows
    )


def default_plan(flag: str = "model-rollout") -> RolloutPlan:
    """The shipped plan: steps 1, 5, 25, 50, 100 %, 1,000 requests per arm and 10 minutes per step,
    promotion by a person, ``default_metrics()``. 1,000 canary requests give the refusal guardrail
    the power to fail +5 points of refusals within the step in most replays (docs/rollouts.md);
    with 300 most such canaries passed the first step and were caught at the next."""
    return RolloutPlan(flag=flag)


def _field_path(loc: Iterable[int | str]) -> str:
    parts = list(loc)
    out = ""
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i == 1 and parts[0] == "subject" and part in ("model", "policy"):
            continue  # the discriminator tag pydantic adds to the location
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_plan(data: Mapping[str, Any], *, source: str = "", prefix: str = "rollout") -> RolloutPlan:
    """Validate a plan mapping. Raises ``ConfigError`` whose message is one line naming the first
    offending field (``rollout.steps: ...``)."""
    try:
        return RolloutPlan.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        path = _field_path(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(msg, source=source, field=f"{prefix}.{path}" if path else prefix) from None


def validate_against(
    plan: RolloutPlan,
    known_flags: Iterable[str],
    known_aliases: Iterable[str],
    known_policies: Iterable[str],
    *,
    prefix: str = "rollout",
) -> list[str]:
    """Names ``plan`` uses that the full configuration does not define, as one line each
    (``rollout.flag: unknown flag 'x'``); empty when everything resolves. The config check calls
    this with the configured flag names, model aliases (``model_list[].model_name``) and policy ids."""
    problems: list[str] = []
    flags, aliases, policies = set(known_flags), set(known_aliases), set(known_policies)
    if plan.flag not in flags:
        problems.append(f"{prefix}.flag: unknown flag {plan.flag!r}")
    subj = plan.subject
    if isinstance(subj, ModelSubject):
        for side in ("control", "canary"):
            alias = getattr(subj, side)
            if alias not in aliases:
                problems.append(f"{prefix}.subject.{side}: unknown model alias {alias!r}")
    elif subj.policy not in policies:
        problems.append(f"{prefix}.subject.policy: unknown policy {subj.policy!r}")
    return problems
