"""The reviewer rates of a rollout step, from the review queues' verdicts: the judge's
``reviewer_regression_rate`` and ``reviewer_false_positive_rate`` as ``MetricData`` (per arm
``Moments`` of a 0/1 value per reviewed item).

Which items: decided at or after the step's start (``ReviewService.labelled_since``, every queue
but adjudication/escalation, the final label as the precision report takes it: adjudicated,
else the aggregated posterior label, else the single verdict) *and* created at or after it, so
a verdict on an interaction of an earlier step (stale) never counts for this one. The rollout's
own breach items (``source`` ``rollout``) are left out. The arm is the item payload's flag
variant for the plan's flag (``payload.flags.variants[flag]``), else the item's variant
(``metadata.variant`` of the interaction); items of other variants are left out.

* ``reviewer_regression_rate``: among an arm's reviewed items, the share whose final label is
  not ``acceptable`` (taxonomy ``acceptable: false``: a reviewer confirmed something wrong).
* ``reviewer_false_positive_rate``: among an arm's reviewed items raised by a block of a policy
  (the plan's policy for a policy rollout, any policy for a model rollout; enforced or shadow),
  the share whose final label does not confirm the alert (``confirms_alert: false``: the block was
  a false positive).

An item without a final label (reviewers disagree and no aggregate yet) is not counted. Fewer
than ``MIN_LOOK`` items in an arm make the metric ``no_data`` in the judge, so the step is
inconclusive on it, never pass: no verdicts, or only stale ones, never promote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from detectors.rollout_judge import MetricData, Moments
from gateway.review.config import LabelSpec
from gateway.review.queue import ReviewItem
from gateway.review.service import ReviewService
from rollguard.rollout import PolicySubject, RolloutPlan

REGRESSION = "reviewer_regression_rate"
FALSE_POSITIVE = "reviewer_false_positive_rate"


def arm_of(item: ReviewItem, flag: str) -> str | None:
    """The flag variant the item's interaction was served by (module docstring), or None."""
    flags = item.payload.get("flags")
    variants = flags.get("variants") if isinstance(flags, Mapping) else None
    if isinstance(variants, Mapping) and variants.get(flag):
        return str(variants[flag])
    return item.variant


def blocked_by(payload: Mapping[str, Any], policy: str | None) -> bool:
    """True when a decision in ``payload`` is a block by ``policy`` (any policy when None)."""
    return any(
        isinstance(d, Mapping)
        and d.get("verdict") == "block"
        and (policy is None or d.get("policy") == policy)
        for d in payload.get("decisions") or []
    )


def reviewer_metrics(
    plan: RolloutPlan,
    labelled: Iterable[tuple[ReviewItem, LabelSpec | None]],
    since_ms: int,
    *,
    control: str = "control",
    canary: str = "canary",
) -> dict[str, MetricData]:
    """The step's reviewer rates (module docstring) for the plan metrics that name them.
    ``since_ms``: the step's start (UTC epoch ms)."""
    wanted = {m.name for m in plan.metrics} & {REGRESSION, FALSE_POSITIVE}
    if not wanted:
        return {}
    policy = plan.subject.policy if isinstance(plan.subject, PolicySubject) else None
    values: dict[str, dict[str, list[float]]] = {
        name: {control: [], canary: []} for name in (REGRESSION, FALSE_POSITIVE)
    }
    for item, spec in labelled:
        arm = arm_of(item, plan.flag)
        stale = item.created_ms < since_ms or item.source == "rollout"
        if spec is None or stale or arm not in (control, canary):
            continue
        values[REGRESSION][arm].append(0.0 if spec.acceptable else 1.0)
        if blocked_by(item.payload, policy):
            values[FALSE_POSITIVE][arm].append(0.0 if spec.confirms_alert else 1.0)
    return {
        name: MetricData(Moments.of(values[name][control]), Moments.of(values[name][canary]))
        for name in wanted
    }


async def read_reviewer_metrics(
    reviews: ReviewService | None, plan: RolloutPlan, since_ms: int
) -> dict[str, MetricData]:
    """``reviewer_metrics`` over the review queues' verdicts since ``since_ms``; ``{}`` without a
    review service or when the plan names no reviewer rate. Raises ``StoreError``."""
    if reviews is None or not {m.name for m in plan.metrics} & {REGRESSION, FALSE_POSITIVE}:
        return {}
    return reviewer_metrics(plan, await reviews.labelled_since(since_ms), since_ms)
