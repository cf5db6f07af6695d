"""Rollout plan validation (issue 8 item 1): one line naming the field for every refusal."""

from __future__ import annotations

from typing import Any

import pytest

from detectors.shortcuts import DETECTORS, ShortcutDetectors
from rollguard.errors import ConfigError
from rollguard.rollout import (
    METRICS,
    ModelSubject,
    PolicySubject,
    default_plan,
    parse_plan,
    validate_against,
)
from rollguard.types import Message


def _err(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_plan(data, source="cfg.yaml")
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"flag": "f", "steps": [1, 5, 5, 100]}, "rollout.steps", "strictly increasing"),
        ({"flag": "f", "steps": [10, 5, 100]}, "rollout.steps", "strictly increasing"),
        ({"flag": "f", "steps": [1, 50]}, "rollout.steps", "last step must be 100"),
        ({"flag": "f", "steps": [100]}, "rollout.steps", "at least one judged step"),
        ({"flag": "f", "steps": [0, 100]}, "rollout.steps", "above 0"),
        (
            {"flag": "f", "metrics": [{"name": "nope", "tolerance": 0.1}]},
            "rollout.metrics[0].name",
            "unknown metric",
        ),
        (
            {"flag": "f", "metrics": [{"name": "refusal_rate", "tolerance": -0.01}]},
            "rollout.metrics[0].tolerance",
            "wrong way",
        ),
        (
            {
                "flag": "f",
                "metrics": [{"name": "block_rate", "direction": "decrease_is_bad", "tolerance": 0.02}],
            },
            "rollout.metrics[0].tolerance",
            "wrong way",
        ),
        (
            {"flag": "f", "metrics": [{"name": "reply_length_ratio", "tolerance": 0.2}]},
            "rollout.metrics[0].tolerance",
            "relative",
        ),
        (
            {"flag": "f", "metrics": [{"name": "refusal_rate", "tolerance": 5}]},
            "rollout.metrics[0].tolerance",
            "share in [0, 1)",
        ),
        (
            {"flag": "f", "metrics": [{"name": "refusal_rate", "tolerance": 0.01, "kind": "alarm"}]},
            "rollout.metrics[0].kind",
            "guardrail",
        ),
        (
            {"flag": "f", "metrics": [{"name": "refusal_rate", "tolerance": 0.01}] * 2},
            "rollout.metrics",
            "listed twice",
        ),
        ({"flag": "f", "metrics": []}, "rollout.metrics", "at least one metric"),
        ({"flag": "f", "alpha": 0}, "rollout.alpha", "greater than 0"),
        ({"steps": [1, 100]}, "rollout.flag", "required"),
        ({"flag": "f", "subject": {"kind": "policy"}}, "rollout.subject.policy", "required"),
        (
            {"flag": "f", "subject": {"kind": "model", "control": "a", "canary": "a"}},
            "rollout.subject",
            "differ",
        ),
        ({"flag": "f", "min_samples": 300, "typo": 1}, "rollout.typo", "not permitted"),
    ],
)
def test_bad_plans_are_refused_with_one_line_naming_the_field(
    data: dict[str, Any], field: str, words: str
) -> None:
    msg = _err(data)
    assert msg.startswith(f"cfg.yaml: {field}: "), msg
    assert words in msg


def test_default_plan_and_alpha_split() -> None:
    plan = default_plan()
    assert plan.steps == (1, 5, 25, 50, 100) and plan.judged_steps == (1, 5, 25, 50)
    assert not plan.auto_promote and plan.alpha == 0.05
    assert plan.metric_alpha == pytest.approx(0.05 / len(plan.metrics))
    kinds = {m.name: m.kind for m in plan.metrics}
    assert kinds["refusal_rate"] == "guardrail" and kinds["reply_length_ratio"] == "signal"
    assert plan.version() == default_plan().version()
    assert plan.version() != plan.model_copy(update={"alpha": 0.01}).version()
    assert parse_plan(plan.model_dump(mode="json")) == plan


def test_policy_subject_and_decrease_is_bad() -> None:
    plan = parse_plan(
        {
            "flag": "pii-enforce",
            "subject": {"kind": "policy", "policy": "pii"},
            "steps": [10, 50, 100],
            "metrics": [
                {"name": "reviewer_false_positive_rate", "tolerance": 0.05, "kind": "signal"},
                {"name": "block_rate", "direction": "decrease_is_bad", "tolerance": -0.02},
            ],
        }
    )
    assert isinstance(plan.subject, PolicySubject) and plan.subject.policy == "pii"


def test_validate_against_names_unknown_flag_alias_and_policy() -> None:
    plan = parse_plan({"flag": "model-rollout", "subject": {"kind": "model", "control": "a", "canary": "b"}})
    assert isinstance(plan.subject, ModelSubject)
    assert validate_against(plan, ["model-rollout"], ["a", "b"], []) == []
    assert validate_against(plan, ["other"], ["a"], []) == [
        "rollout.flag: unknown flag 'model-rollout'",
        "rollout.subject.canary: unknown model alias 'b'",
    ]
    pol = parse_plan({"flag": "f", "subject": {"kind": "policy", "policy": "pii"}})
    assert validate_against(pol, ["f"], [], ["secrets"]) == ["rollout.subject.policy: unknown policy 'pii'"]


def test_catalog_names_every_shortcut_detector() -> None:
    # The detectors that actually run (ShortcutDetectors.run on a reply) all have a rate metric.
    ran = ShortcutDetectors().score([Message(role="user", content="hi")], "I cannot help with that.")
    assert set(ran) == set(DETECTORS)
    for d in DETECTORS:
        assert METRICS[f"{d}_rate"].estimator == "rate"
    assert (
        METRICS["latency_p95_ms"].estimator == "p95"
        and METRICS["reply_length_ratio"].estimator == "log_ratio"
    )
