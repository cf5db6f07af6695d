"""End to end (real gateway under uvicorn, real stub upstream, real store): the upstream's
``Retry-After`` on a 429/503 is waited out by the gateway's retry, and when the gateway gives up
the client gets the wait as ``Retry-After`` (whole seconds, rounded up) with an OpenAI-shaped
body, so the OpenAI SDK's own retry backs off by it."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from tests.integration.conftest import GatewayFactory, Stub

pytestmark = pytest.mark.integration

OK_MSG = [{"role": "user", "content": "hello"}]


def _post(url: str, stream: bool) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        timeout=30,
        json={"model": "scripted", "stream": stream, "messages": OK_MSG},
    )


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("script", "status", "code", "retry_after"),
    [
        ({"status": 429, "headers": {"Retry-After": "7"}}, 429, "upstream_rate_limited", "7"),
        ({"status": 503, "headers": {"retry-after-ms": "1200"}}, 503, "upstream_overloaded", "2"),
        ({"status": 429, "headers": {"Retry-After": "-4"}}, 429, "upstream_rate_limited", None),
        ({"status": 503, "headers": {"Retry-After": "soon"}}, 503, "upstream_overloaded", None),
        ({"status": 503}, 503, "upstream_overloaded", None),
    ],
    ids=["429-seconds", "503-ms-rounded-up", "429-negative", "503-garbage", "503-none"],
)
def test_client_gets_the_upstreams_wait_as_retry_after(
    gateway: GatewayFactory,
    stub: Stub,
    stream: bool,
    script: dict[str, Any],
    status: int,
    code: str,
    retry_after: str | None,
) -> None:
    stub.script("scripted", script)
    with gateway(router_settings={"num_retries": 0, "timeout": 5}) as url:
        resp = _post(url, stream)
    assert resp.status_code == status, resp.text
    assert resp.headers.get("retry-after") == retry_after
    err = resp.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["code"] == code
    assert "Traceback" not in resp.text


@pytest.mark.parametrize("stream", [False, True])
def test_gateway_waits_out_a_one_second_retry_after(
    gateway: GatewayFactory, stub: Stub, stream: bool
) -> None:
    with gateway(router_settings={"num_retries": 1, "timeout": 5}) as url:
        assert _post(url, stream).status_code == 200  # warm
        stub.script("scripted", {"status": 429, "headers": {"Retry-After": "1"}})
        t0 = time.perf_counter()
        resp = _post(url, stream)
        elapsed = time.perf_counter() - t0
    assert resp.status_code == 200, resp.text
    assert 0.95 <= elapsed < 2.0, elapsed
    assert stub.calls() == 3


def test_openai_sdk_backs_off_by_the_gateways_retry_after(gateway: GatewayFactory, stub: Stub) -> None:
    """Without the header the SDK's first backoff is 0.375-0.5 s; with ``Retry-After: 1`` it is 1 s."""
    with gateway(router_settings={"num_retries": 0, "timeout": 5}) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=1)
        client.chat.completions.create(model="scripted", messages=OK_MSG)  # warm
        stub.script("scripted", {"status": 429, "headers": {"Retry-After": "1"}})
        t0 = time.perf_counter()
        reply = client.chat.completions.create(model="scripted", messages=OK_MSG)
        elapsed = time.perf_counter() - t0
    assert reply.choices[0].message.content
    assert 0.95 <= elapsed < 2.5, elapsed
    assert stub.calls() == 3
