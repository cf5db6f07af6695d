"""Wildcard routes end to end (issue 12): ``model_name: "*"`` and ``"openai/*"`` through a real
gateway to the real upstream stub, on the lean path and on the litellm path (a real
``litellm.acompletion`` over HTTP); the stub records the model name it was asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.conftest import GatewayFactory, Stub

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize(
    ("name", "model", "stars"),
    [("a", "openai/*", "1 '*' but model_name 'a' has 0"), ("team-*", "openai/*-*", "2 '*' but model_name")],
)
def test_config_check_refuses_a_star_the_model_name_cannot_fill(
    tmp_path: Path, stub: Stub, name: str, model: str, stars: str
) -> None:
    config = {
        "model_list": [{"model_name": name, "litellm_params": {"model": model, "api_base": stub.base_url}}]
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLGUARD_")}
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "config", "check", str(path)],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "model_list.0: litellm_params.model" in out and stars in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize("requested", ["openai/", "team--v2", "team-a-v"])
def test_a_star_matches_at_least_one_character(gateway: GatewayFactory, stub: Stub, requested: str) -> None:
    params = {"api_base": stub.base_url, "api_key": "sk-test"}
    models = [
        {"model_name": "openai/*", "litellm_params": {"model": "openai/*", **params}},
        {"model_name": "team-*-v*", "litellm_params": {"model": "openai/m-*-*", **params}},
    ]
    with gateway(model_list=models, policies=[]) as url:
        resp = chat(url, requested)
        served = chat(url, "team-a-v2")
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"]["code"] == "model_not_found"
    assert served.status_code == 200
    assert [r["model"] for r in stub.requests()] == ["m-a-2"]  # "" or "m--2" never reached the upstream
