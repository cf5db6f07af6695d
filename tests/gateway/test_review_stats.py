"""The reviewer rates' item selection (``gateway.rollout.review_stats``): stale, undecided, breach
and other-variant items are not counted; a policy rollout counts only its policy's blocks."""

from __future__ import annotations

from typing import Any

from gateway.review.config import LabelSpec, Priority
from gateway.review.queue import ReviewItem
from gateway.rollout.review_stats import reviewer_metrics
from rollguard.rollout import MetricSpec, PolicySubject, RolloutPlan

OK = LabelSpec(
    id="acceptable", title="Acceptable", key="1", acceptable=True, confirms_alert=False, judges="reply"
)
BAD = LabelSpec(id="refusal", title="Over-refusal", key="6", judges="reply")


def item(variant: str, *, created: int = 100, source: str = "interaction", policy: str = "pii") -> ReviewItem:
    payload: dict[str, Any] = {
        "decisions": [{"policy": policy, "verdict": "block"}],
        "flags": {"variants": {"f": variant}},
    }
    return ReviewItem(
        "i", "q", "decided", "t", source, "x", Priority.P3, 1, created, 0, 0, payload, [], None, None
    )


def plan(subject: Any = None) -> RolloutPlan:
    metrics = (
        MetricSpec(name="reviewer_regression_rate", tolerance=0.05),
        MetricSpec(name="reviewer_false_positive_rate", tolerance=0.05),
    )
    extra = {"subject": subject} if subject is not None else {}
    return RolloutPlan(flag="f", metrics=metrics, **extra)


def test_only_fresh_decided_items_of_the_two_arms_count() -> None:
    labelled = [
        (item("canary"), BAD),
        (item("canary"), OK),
        (item("canary", created=50), BAD),  # an earlier step's interaction: stale
        (item("canary"), None),  # reviewers disagree, no final label yet
        (item("canary", source="rollout"), BAD),  # the rollout's own breach item
        (item("other"), BAD),
        (item("control"), OK),
    ]
    m = reviewer_metrics(plan(), labelled, since_ms=100)
    reg = m["reviewer_regression_rate"]
    assert (reg.canary.n, reg.canary.s, reg.control.n, reg.control.s) == (2, 1.0, 1, 0.0)
    fp = m["reviewer_false_positive_rate"]  # acceptable on a block: the block was not confirmed
    assert (fp.canary.n, fp.canary.s, fp.control.n, fp.control.s) == (2, 1.0, 1, 1.0)


def test_a_policy_rollout_counts_only_its_policys_blocks() -> None:
    labelled = [(item("canary", policy="pii"), BAD), (item("canary", policy="toxicity"), OK)]
    m = reviewer_metrics(plan(PolicySubject(policy="pii")), labelled, since_ms=0)
    assert m["reviewer_false_positive_rate"].canary.n == 1
    assert m["reviewer_regression_rate"].canary.n == 2
