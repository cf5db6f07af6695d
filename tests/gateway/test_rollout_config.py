"""The ``rollouts`` config section: bad plans are refused at load, or by the config check for names
only the whole config knows, with one line naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config_check import check_config
from rollguard.errors import ConfigError
from rollguard.settings import load_settings

MODELS = [
    {
        "model_name": n,
        "litellm_params": {"model": f"openai/{n}", "api_base": "http://127.0.0.1:9/v1", "api_key": "k"},
    }
    for n in ("chat-v1", "chat-v2")
]
GOOD_PLAN = {"flag": "model-rollout", "subject": {"kind": "model", "control": "chat-v1", "canary": "chat-v2"}}


def write(tmp_path: Path, plan: dict[str, Any]) -> Path:
    cfg = {
        "model_list": MODELS,
        "flags": {
            "rollouts": {
                "chat": {"flag": "model-rollout", "variants": {"control": "chat-v1", "canary": "chat-v2"}}
            }
        },
        "rollouts": {"plans": {"chat-v2": plan}},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def problem(tmp_path: Path, plan: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        check_config(load_settings(write(tmp_path, plan)), "cfg.yaml")
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_good_plan_passes(tmp_path: Path) -> None:
    checked = check_config(load_settings(write(tmp_path, GOOD_PLAN)), "cfg.yaml")
    assert checked.settings.rollouts.plans["chat-v2"].steps == (1, 5, 25, 50, 100)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"steps": [5, 5, 100]}, "rollouts.plans.chat-v2.steps", "strictly increasing"),
        (
            {"metrics": [{"name": "refusal_rate", "tolerance": -0.01}]},
            "rollouts.plans.chat-v2.metrics.0.tolerance",
            "wrong way",
        ),
        (
            {"metrics": [{"name": "nonsense_rate", "tolerance": 0.01}]},
            "rollouts.plans.chat-v2.metrics.0.name",
            "unknown metric",
        ),
        ({"flag": "nope"}, "rollouts.plans.chat-v2.flag", "unknown flag 'nope'"),
        (
            {"subject": {"kind": "model", "control": "chat-v1", "canary": "gpt-x"}},
            "rollouts.plans.chat-v2.subject.canary",
            "unknown model alias",
        ),
        (
            {"subject": {"kind": "policy", "policy": "nope"}},
            "rollouts.plans.chat-v2.subject.policy",
            "unknown policy",
        ),
    ],
)
def test_a_bad_plan_is_refused_naming_the_field(
    tmp_path: Path, change: dict[str, Any], field: str, words: str
) -> None:
    message = problem(tmp_path, {**GOOD_PLAN, **change})
    assert f"cfg.yaml: {field}: " in message and words in message
