"""A client that leaves mid-stream: the gateway stops reading the upstream at once and records what
the client actually received, with ``status: 499``, ``error_code`` / ``metadata.outcome``
``client_disconnected`` and ``finish_reason: null`` (the stub pauses mid-stream, so the upstream is
still open when the client goes)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import orjson
import pytest

from tests.integration.conftest import GatewayFactory, Stub

pytestmark = pytest.mark.integration

HEAD = "The first part of the reply arrives at once and is long enough to leave the hold-back window. " * 4
TAIL = "This tail comes after the pause and must never be recorded as delivered. " * 4
PAUSE_MS = 4000


def _records(redis_url: str) -> list[dict[str, Any]]:
    import redis

    r = redis.Redis.from_url(redis_url)
    return [orjson.loads(fields[b"record"]) for _, fields in r.xrange("rollguard:interactions")]


def _wait_record(redis_url: str, iid: str, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for rec in _records(redis_url):
            if rec["id"] == iid:
                return rec
        time.sleep(0.05)
    return None


@pytest.mark.parametrize(
    "limits",
    [None, {"tenants": {"default": {"rpm": 100, "tpm": 100000}}}],
    ids=["no-rate-limits", "rate-limited"],  # a budget wraps the stream to charge its tokens
)
def test_client_leaving_mid_stream_stops_the_upstream_and_records_what_was_delivered(
    gateway: GatewayFactory, stub: Stub, redis_url: str, limits: dict[str, Any] | None
) -> None:
    stub.script(
        "scripted",
        {
            "chunks": [
                {"content": HEAD, "role": "assistant"},
                {"delay_ms": PAUSE_MS},
                {"content": TAIL},
                {"finish_reason": "stop"},
            ]
        },
    )
    body = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    received = ""
    with gateway(**({"rate_limits": limits} if limits else {})) as url:
        t0 = time.monotonic()
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp,
        ):
            assert resp.status_code == 200
            iid = resp.headers["x-rollguard-interaction-id"]
            for line in resp.iter_lines():
                if line.startswith("data: {"):
                    for c in json.loads(line[6:])["choices"]:
                        received += c["delta"].get("content") or ""
                if received:
                    break  # leave after the first chunk with text; the stub is mid-pause
        # Recorded while the gateway runs, long before the upstream's pause would have ended.
        rec = _wait_record(redis_url, iid, timeout=PAUSE_MS / 1000 - 1.5)
        left_after = time.monotonic() - t0
    assert rec is not None, "no record before the upstream's pause ended: the relay kept reading"
    assert left_after < PAUSE_MS / 1000
    assert received and HEAD.startswith(received)
    assert rec["status"] == 499
    assert rec["error_code"] == "client_disconnected"
    assert rec["metadata"]["outcome"] == "client_disconnected"
    assert rec["finish_reason"] is None
    assert rec["completion"] == received
    assert "tail" not in rec["completion"]
    assert rec["upstream_ms"] < PAUSE_MS - 1000


def test_a_stream_read_to_the_end_is_recorded_as_ok(
    gateway: GatewayFactory, stub: Stub, redis_url: str
) -> None:
    with gateway() as url:
        resp = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "echo", "stream": True, "messages": [{"role": "user", "content": "hello there"}]},
            timeout=30,
        )
        iid = resp.headers["x-rollguard-interaction-id"]
    rec = next(r for r in _records(redis_url) if r["id"] == iid)
    assert rec["status"] == 200 and rec["finish_reason"] == "stop"
    assert rec["metadata"]["outcome"] == "ok" and rec["completion"] == "hello there"


def test_a_non_streamed_client_leaving_cancels_the_upstream_call_and_is_recorded_as_499(
    gateway: GatewayFactory, stub: Stub, redis_url: str
) -> None:
    """Issue 10, fault 6: a non-streamed client that disconnected was not noticed: the upstream
    was called and retried for nobody. The upstream here answers 500 after 1.5 s (retried twice
    if the gateway kept going); the client leaves after 0.5 s."""
    stub.script("scripted", {"delay_ms": 1500, "status": 500}, times=None)
    body = {"model": "scripted", "messages": [{"role": "user", "content": "go"}]}
    before = {r["id"] for r in _records(redis_url)}
    with gateway(router_settings={"num_retries": 2, "retry_after": 0, "timeout": 10}) as url:
        t0 = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", json=body, timeout=0.5)
        rec = None
        while rec is None and time.monotonic() - t0 < 1.4:  # before the upstream would answer
            rec = next((r for r in _records(redis_url) if r["id"] not in before), None)
            time.sleep(0.02)
        time.sleep(3.0)  # long enough for two retries, had the call gone on
        calls = stub.calls()
    assert rec is not None, "not recorded before the upstream's answer: the disconnect went unnoticed"
    assert rec["status"] == 499 and rec["error_code"] == "client_disconnected"
    assert rec["metadata"]["outcome"] == "client_disconnected"
    assert calls == 1  # cancelled, never retried
