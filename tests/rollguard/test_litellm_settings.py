"""LiteLLM Proxy config mapping (``rollguard.litellm_settings``): which keys are acted on, which are
named as ignored, and how ``litellm_settings`` fills ``router_settings``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rollguard.litellm_settings import ModelEntry, RouterSettings, ignored_keys, with_litellm_settings


def entry(model: str = "openai/x", **params: Any) -> ModelEntry:
    return ModelEntry(model_name="m", litellm_params={"model": model, **params})


def test_litellm_settings_fill_what_router_settings_leave_unset() -> None:
    router = RouterSettings.model_validate({"timeout": 20})
    got = with_litellm_settings(
        router, {"num_retries": 4, "request_timeout": 99, "fallbacks": [{"a": ["b"]}]}
    )
    assert (got.num_retries, got.timeout, got.fallbacks) == (4, 20, [{"a": ["b"]}])
    assert with_litellm_settings(router, {"drop_params": True}) is router  # nothing acted on


def test_bad_litellm_setting_names_the_litellm_field() -> None:
    with pytest.raises(ValueError, match=r"^litellm_settings\.request_timeout: "):
        with_litellm_settings(RouterSettings(), {"request_timeout": -1})


def test_lean_and_litellm_paths_ignore_different_params() -> None:
    lean = entry(temperature=0.1, rpm=5, max_retries=2, api_base="http://h/v1")
    via_litellm = entry("anthropic/claude", temperature=0.1, max_retries=2, api_version="x")
    got = ignored_keys([lean, via_litellm], RouterSettings(), {}, {0: True, 1: False})
    # lean: only what the lean transport and the router read; litellm: all but the retry counts
    assert got == [
        "model_list[0].litellm_params.{temperature, max_retries}",
        "model_list[1].litellm_params.{max_retries}",
    ]


def test_router_and_section_keys_named_acted_ones_not() -> None:
    router = RouterSettings.model_validate(
        {"num_retries": 2, "allowed_fails": 1, "routing_strategy": "least-busy", "model_group_alias": {}}
    )
    sections = {
        "litellm_settings": {"num_retries": 1, "cache": True},
        "general_settings": {"master_key": "k"},
    }
    got = ignored_keys([], router, sections, {})
    assert got == [
        "router_settings.{routing_strategy, model_group_alias}",
        "litellm_settings.{cache}",
        "general_settings.{master_key}",
    ]


def test_entries_with_the_same_ignored_keys_are_named_once() -> None:
    entries = [
        ModelEntry(model_name=f"m{i}", litellm_params={"model": "openai/x"}, model_info={"id": f"d{i}"})
        for i in range(3)
    ]
    entries[1].model_info["mode"] = "chat"
    got = ignored_keys(entries, RouterSettings(), {}, {0: True, 1: True, 2: True})
    assert got == ["model_list[0, 2].model_info.{id}", "model_list[1].model_info.{id, mode}"]


@pytest.mark.parametrize("value", [0, -3, "10", 1.5, True])
def test_deployment_rpm_tpm_must_be_whole_numbers(value: object) -> None:
    with pytest.raises(ValidationError, match="whole number >= 1"):
        entry(rpm=value)
