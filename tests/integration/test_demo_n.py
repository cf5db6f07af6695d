"""The demo model honours ``n`` (issue 12): n choices, JSON and streamed, through the gateway."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.integration.conftest import GatewayFactory

pytestmark = pytest.mark.integration

BODY = {"model": "echo", "messages": [{"role": "user", "content": "say it twice"}]}


def test_n_choices_json_and_streamed(gateway: GatewayFactory) -> None:
    with gateway(policies=[]) as url:
        one = httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=30).json()
        resp = httpx.post(f"{url}/v1/chat/completions", json={**BODY, "n": 3}, timeout=30)
        assert resp.status_code == 200, resp.text
        data = resp.json()
        assert [c["index"] for c in data["choices"]] == [0, 1, 2]
        assert {c["message"]["content"] for c in data["choices"]} == {"say it twice"}
        assert data["usage"]["completion_tokens"] == 3 * one["usage"]["completion_tokens"]
        stream = httpx.post(
            f"{url}/v1/chat/completions",
            json={**BODY, "n": 2, "stream": True},
            timeout=30,
        )
        assert stream.status_code == 200, stream.text
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for line in stream.text.splitlines():
        if not line.startswith("data: {"):
            continue
        for choice in orjson.loads(line[6:])["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + (choice["delta"].get("content") or "")
            if choice.get("finish_reason"):
                finishes[choice["index"]] = choice["finish_reason"]
    assert texts == {0: "say it twice", 1: "say it twice"}
    assert finishes == {0: "stop", 1: "stop"}


def test_the_demo_model_stops_at_max_tokens(gateway: GatewayFactory) -> None:
    """The demo model honours ``max_tokens`` as OpenAI's models do (found by a user trial: a
    tenant's cap reached the upstream, but the demo reply ran on): cut, ``finish_reason`` length."""
    long = {"model": "echo", "messages": [{"role": "user", "content": "word " * 100}]}
    with gateway(policies=[]) as url:
        capped = httpx.post(f"{url}/v1/chat/completions", json={**long, "max_tokens": 10}, timeout=30).json()
        assert capped["choices"][0]["finish_reason"] == "length"
        assert capped["usage"]["completion_tokens"] == 10
        assert len(capped["choices"][0]["message"]["content"]) == 40
        full = httpx.post(f"{url}/v1/chat/completions", json={**long, "max_tokens": 1000}, timeout=30).json()
        assert full["choices"][0]["finish_reason"] == "stop"
        stream = httpx.post(
            f"{url}/v1/chat/completions",
            json={**long, "max_completion_tokens": 5, "stream": True},
            timeout=30,
        )
    finishes = [
        c["finish_reason"]
        for line in stream.text.splitlines()
        if line.startswith("data: {")
        for c in orjson.loads(line[6:])["choices"]
        if c.get("finish_reason")
    ]
    assert finishes == ["length"]
