"""``check_config`` refuses model deployments that would fail only at request time: an
``api_base``/``base_url`` that is not an http(s) URL, a provider litellm does not know."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config_check import check_config
from rollguard.errors import ConfigError
from rollguard.settings import RollguardSettings


def _settings(**params: Any) -> RollguardSettings:
    return RollguardSettings(model_list=[{"model_name": "m", "litellm_params": params}], policies=[])


@pytest.mark.parametrize(
    ("params", "field", "text"),
    [
        ({"model": "openai/m", "api_base": "not a url"}, "api_base", "not an http(s) URL: 'not a url'"),
        ({"model": "openai/m", "api_base": "127.0.0.1:8000/v1"}, "api_base", "not an http(s) URL"),
        ({"model": "openai/m", "base_url": "ftp://host/v1"}, "base_url", "not an http(s) URL"),
        ({"model": "anthropic/claude", "api_base": "http:///v1"}, "api_base", "not an http(s) URL"),
        ({"model": "hosted_vllm/m", "api_base": 8000}, "api_base", "not an http(s) URL: 8000"),
        ({"model": "nosuchprovider/whatever"}, "model", "unknown provider 'nosuchprovider'"),
        (
            {"model": "m", "rollguard_path": "litellm", "custom_llm_provider": "nope"},
            "custom_llm_provider",
            "unknown provider 'nope'",
        ),
    ],
)
def test_bad_deployments_are_refused_naming_the_field(params: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_config(_settings(**params), "cfg.yaml")
    message = str(err.value)
    assert message.startswith(f"cfg.yaml: model_list[0].litellm_params.{field}: {text}")
    assert "\n" not in message


def test_an_api_base_from_the_environment_is_checked_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLGUARD_TEST_BASE", "localhost")
    with pytest.raises(ConfigError, match=r"api_base: not an http\(s\) URL: os.environ/ROLLGUARD_TEST_BASE"):
        check_config(_settings(model="openai/m", api_base="os.environ/ROLLGUARD_TEST_BASE"))
    monkeypatch.setenv("ROLLGUARD_TEST_BASE", "http://127.0.0.1:9/v1")
    check_config(_settings(model="openai/m", api_base="os.environ/ROLLGUARD_TEST_BASE"))


@pytest.mark.parametrize(
    "params",
    [
        {"model": "openai/m", "api_base": "https://example.invalid/v1"},
        {"model": "anthropic/claude-3-5-sonnet", "api_key": "k"},
        {"model": "ollama_chat/llama3", "api_base": "http://127.0.0.1:11434"},
        {"model": "azure/gpt-4o", "api_base": "https://x.openai.azure.com", "api_version": "2024-06-01"},
        {"model": "meta-llama/Llama-3-8b", "custom_llm_provider": "together_ai"},
        {"model": "gpt-4o"},
    ],
)
def test_known_providers_and_urls_pass(params: dict[str, Any]) -> None:
    check_config(_settings(**params))
