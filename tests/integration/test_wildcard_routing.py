"""Wildcard routes end to end (issue 12): ``model_name: "*"`` and ``"openai/*"`` through a real
gateway to the real upstream stub, on the lean path and on the litellm path (a real
``litellm.acompletion`` over HTTP); the stub records the model name it was asked for."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.conftest import GatewayFactory, Stub

pytestmark = pytest.mark.integration


def chat(url: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": f"ping {model}"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


@pytest.mark.parametrize("path", ["lean", "litellm"])
def test_wildcards_route_to_the_requested_upstream_model(
    gateway: GatewayFactory, stub: Stub, path: str
) -> None:
    params: dict[str, Any] = {"api_base": stub.base_url, "api_key": "sk-test", "rollguard_path": path}
    models = [
        {"model_name": "openai/*", "litellm_params": {"model": "openai/*", **params}},
        {"model_name": "*", "litellm_params": {"model": "openai/*", **params}},
        {"model_name": "pinned", "litellm_params": {"model": "openai/demo", **params}},
    ]
    with gateway(model_list=models, policies=[]) as url:
        star = chat(url, "echo")
        prefixed = chat(url, "openai/echo")
        pinned = chat(url, "pinned")
        listed = httpx.get(f"{url}/v1/models", timeout=10).json()
    for resp in (star, prefixed, pinned):
        assert resp.status_code == 200, resp.text
    assert "ping echo" in star.json()["choices"][0]["message"]["content"]  # echo model answered
    assert "ping openai/echo" in prefixed.json()["choices"][0]["message"]["content"]
    assert [r["model"] for r in stub.requests()] == ["echo", "echo", "demo"]
    assert [m["id"] for m in listed["data"]] == ["openai/*", "*", "pinned"]  # requested names not listed


def test_unmatched_name_is_404_without_a_catch_all(gateway: GatewayFactory, stub: Stub) -> None:
    params = {"api_base": stub.base_url, "api_key": "sk-test"}
    models = [{"model_name": "openai/*", "litellm_params": {"model": "openai/*", **params}}]
    with gateway(model_list=models, policies=[]) as url:
        resp = chat(url, "anthropic/claude")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "model_not_found"
    assert stub.calls() == 0
