"""Rate limits and quotas (issue 12, must-hold "rate limits hold within 5 % under concurrent load on
two gateway processes sharing one store"), with real parts: two ``rollguard serve`` processes on
one real store (the embedded Valkey of the session, or ``ROLLGUARD_TEST_REDIS_URL``), the real
upstream stub, concurrent clients over HTTP. Plus the token budget, per-key budgets, the 429
shape and the store-down rule (fail open) on a real refused socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from gateway.app import create_app
from gateway.ratelimit import RateLimits
from rollguard.errors import RateLimited
from rollguard.ratelimit_settings import RateLimitSettings
from rollguard.settings import RollguardSettings
from tests.integration.conftest import GatewayFactory, Stub, base_config
from tests.servers import free_port, serve_app, wait_http

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
RPM = 150
SENT = 600
KEY = "sk-acme-ci"


def _chat(content: str = "hi") -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": content}]}


class Serve:
    """``python -m gateway.cli serve`` on a free port (its log in ``tmp``)."""

    def __init__(self, cfg: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cfg.parent / f"serve-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLLGUARD_", "OTEL_"))}
        env["PYTHONPATH"] = str(REPO)
        args = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg), "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture()
def two_gateways(tmp_path: Path, stub: Stub, redis_url: str) -> Iterator[tuple[str, str]]:
    config = {
        "model_list": [
            {
                "model_name": "echo",
                "litellm_params": {"model": "openai/echo", "api_base": stub.base_url, "api_key": "k"},
            }
        ],
        "policies": [],
        "gateway": {"api_keys": [{"key": KEY, "tenant": "acme", "name": "ci"}]},
        "store": {"redis_url": redis_url, "data_dir": str(tmp_path / "var")},
        # a loaded shared test machine can stall the store past the 250 ms default; a stalled
        # store fails open, which is the rule for an outage, not what this test measures
        "rate_limits": {"tenants": {"acme": {"rpm": RPM}}, "store_timeout_ms": 2000},
    }
    cfg = tmp_path / "rollguard.yaml"
    cfg.write_text(yaml.safe_dump(config))
    gateways = [Serve(cfg), Serve(cfg)]
    try:
        for g in gateways:
            wait_http(f"{g.url}/healthz", timeout=120)
        stub.reset()
        yield gateways[0].url, gateways[1].url
    finally:
        for g in gateways:
            g.stop()
    for g in gateways:  # had the store stalled, requests would have been admitted unchecked
        assert "store unavailable" not in g.log.read_text()


async def _load(urls: tuple[str, str], sent: int, concurrency: int) -> list[httpx.Response]:
    """``sent`` requests, alternately to each gateway, ``concurrency`` in flight at once."""
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await client.post(
                    f"{urls[i % 2]}/v1/chat/completions", json=_chat(f"m{i}"), headers=headers
                )

        return list(await asyncio.gather(*(one(i) for i in range(sent))))


def test_rpm_holds_within_5_percent_on_two_processes(two_gateways: tuple[str, str], stub: Stub) -> None:
    responses = asyncio.run(_load(two_gateways, SENT, concurrency=48))
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    print(
        f"\nrate limit {RPM} rpm, {SENT} requests on 2 processes: admitted {len(ok)}, refused {len(refused)}"
    )
    assert len(ok) + len(refused) == SENT, {r.status_code for r in responses}
    assert abs(len(ok) - RPM) <= 0.05 * RPM
    served_by = {
        u: sum(1 for i, r in enumerate(responses) if r.status_code == 200 and i % 2 == k)
        for k, u in enumerate(two_gateways)
    }
    assert all(n > 0 for n in served_by.values()), served_by  # both processes admitted some
    assert stub.calls() == len(ok)  # a refused request never reaches the upstream
    body = refused[0].json()["error"]
    assert body["code"] == "rate_limit_exceeded" and body["type"] == "rate_limit_error"
    assert "tenant 'acme'" in body["message"] and f"{RPM} requests per minute" in body["message"]
    assert 1 <= int(refused[0].headers["Retry-After"]) <= 60


def test_token_budget_refuses_once_spent_and_key_budget_applies(gateway: GatewayFactory) -> None:
    keys = [{"key": "sk-a", "tenant": "t1", "name": "bot"}, {"key": "sk-b", "tenant": "t1", "name": "other"}]
    limits = {"tenants": {"t1": {"tpm": 200}}, "keys": {"bot": {"rpm": 2}}}
    with gateway(gateway={"api_keys": keys}, policies=[], rate_limits=limits) as url:
        a = {"Authorization": "Bearer sk-a"}
        b = {"Authorization": "Bearer sk-b"}
        first = httpx.post(f"{url}/v1/chat/completions", json=_chat("one two three"), headers=a, timeout=10)
        assert first.status_code == 200
        spent = first.json()["usage"]["total_tokens"]
        assert spent > 0
        # the key's 2 rpm: the second request passes, the third is refused by the key's budget
        second = httpx.post(f"{url}/v1/chat/completions", json=_chat("four five"), headers=a, timeout=10)
        assert second.status_code == 200
        third = httpx.post(f"{url}/v1/chat/completions", json=_chat(), headers=a, timeout=10)
        assert third.status_code == 429 and "key 'bot'" in third.json()["error"]["message"]
        # key "other" of the same tenant has no key budget; its big reply spends the tenant's
        # 200 tokens (charged once the reply is over), so its next request is refused
        big = httpx.post(f"{url}/v1/chat/completions", json=_chat("word " * 300), headers=b, timeout=10)
        assert big.status_code == 200 and spent + big.json()["usage"]["total_tokens"] > 200
        for _ in range(50):  # the charge is written after the response: allow it a moment
            other = httpx.post(f"{url}/v1/chat/completions", json=_chat(), headers=b, timeout=10)
            if other.status_code == 429:
                break
            time.sleep(0.02)
        assert other.status_code == 429, other.text
        assert "200 tokens per minute" in other.json()["error"]["message"]
        assert int(other.headers["Retry-After"]) >= 1


def test_no_budget_no_ticket_and_store_down_fails_open(caplog: pytest.LogCaptureFixture) -> None:
    none = RateLimits.start(RateLimitSettings(), "redis://127.0.0.1:9/0")
    assert none.ticket("default", None) is None  # no limits: no store round trip at all
    settings = RateLimitSettings.model_validate({"tenants": {"acme": {"rpm": 1, "tpm": 5}}})
    dead = RateLimits.start(settings, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    assert dead.ticket("other", None) is None
    ticket = dead.ticket("acme", None)
    assert ticket is not None

    async def go() -> None:
        for _ in range(3):
            await dead.admit(ticket)  # over the 1 rpm, but the store is down: admitted
        await dead.charge(ticket, 100)
        await dead.aclose()

    with caplog.at_level(logging.WARNING, logger="rollguard.ratelimit"):
        asyncio.run(go())
    warnings = [r for r in caplog.records if "store unavailable" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not per request


def test_deployment_rpm_counts_in_the_store(gateway: GatewayFactory, stub: Stub, redis_url: str) -> None:
    models = [
        {
            "model_name": "echo",
            "litellm_params": {"model": "openai/echo", "api_base": stub.base_url, "api_key": "k", "rpm": 2},
        }
    ]
    with gateway(model_list=models, policies=[]) as url:
        codes = [httpx.post(f"{url}/v1/chat/completions", json=_chat(), timeout=10) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert codes[2].json()["error"]["code"] == "upstream_rate_limited"
    assert int(codes[2].headers["Retry-After"]) >= 1
    assert stub.calls() == 2
    client = redis.Redis.from_url(redis_url)
    assert any(b"echo#0" in k for k in client.keys("rollguard:ratelimit*"))  # shared, not per process
    client.close()


@pytest.mark.parametrize("stream", [False, True])
def test_a_deployment_level_429_spends_no_caller_budget(
    gateway: GatewayFactory, stub: Stub, stream: bool
) -> None:
    """Defect: a request every deployment refused (429 ``upstream_rate_limited``, no upstream
    called) still spent the tenant's rpm; the tenant then lost requests it never made upstream."""
    models = [
        {
            "model_name": name,
            "litellm_params": {"model": f"openai/{name}", "api_base": stub.base_url, "api_key": "k", **extra},
        }
        for name, extra in (("echo", {"rpm": 1}), ("demo", {}))
    ]
    limits = {"tenants": {"default": {"rpm": 3}}}
    with gateway(model_list=models, policies=[], rate_limits=limits) as url:

        def send(model: str) -> httpx.Response:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
            return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)

        echo = [send("echo") for _ in range(4)]
        demo = [send("demo") for _ in range(3)]
    assert [r.status_code for r in echo] == [200, 429, 429, 429]
    assert {r.json()["error"]["code"] for r in echo[1:]} == {"upstream_rate_limited"}
    # 1 of the tenant's 3 rpm spent (the echo that went out): two more, then the tenant's own 429
    assert [r.status_code for r in demo] == [200, 200, 429]
    assert demo[2].json()["error"]["code"] == "rate_limit_exceeded"


def test_streamed_reply_tokens_are_charged(gateway: GatewayFactory) -> None:
    with gateway(policies=[], rate_limits={"tenants": {"default": {"tpm": 30}}}) as url:
        body = {**_chat("word " * 40), "stream": True}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=10) as resp:
            assert resp.status_code == 200
            text = "".join(resp.iter_text())
        assert "[DONE]" in text
        time.sleep(0.5)  # the charge is written in a task once the stream has ended
        after = httpx.post(f"{url}/v1/chat/completions", json=_chat(), timeout=10)
        assert after.status_code == 429  # the very next request: only the stream spent the budget
        assert "tenant 'default': 30 tokens per minute" in after.json()["error"]["message"]


def test_guard_checks_count_against_the_request_budget(gateway: GatewayFactory) -> None:
    with gateway(rate_limits={"tenants": {"default": {"rpm": 2}}}) as url:
        check = {"messages": [{"role": "user", "content": "hello"}]}
        first = httpx.post(f"{url}/v1/guard/check", json=check, timeout=30)
        second = httpx.post(f"{url}/v1/chat/completions", json=_chat(), timeout=30)
        third = httpx.post(f"{url}/v1/guard/check", json=check, timeout=30)
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
    assert third.json()["error"]["code"] == "rate_limit_exceeded" and "Retry-After" in third.headers


def test_tenants_without_an_entry_each_get_their_own_default_budget(gateway: GatewayFactory) -> None:
    keys = [
        {"key": "sk-1", "tenant": "a", "name": "k1"},
        {"key": "sk-2", "tenant": "b", "name": "k2"},
        {"key": "sk-3", "tenant": "c", "name": "k3"},
    ]
    limits = {"tenants": {"default": {"rpm": 2}, "c": {"rpm": 1}}}
    with gateway(gateway={"api_keys": keys}, policies=[], rate_limits=limits) as url:

        def send(key: str) -> httpx.Response:
            auth = {"Authorization": f"Bearer {key}"}
            return httpx.post(f"{url}/v1/chat/completions", json=_chat(), headers=auth, timeout=10)

        a = [send("sk-1").status_code for _ in range(3)]
        b = [send("sk-2") for _ in range(3)]
        c = [send("sk-3").status_code for _ in range(2)]
    assert a == [200, 200, 429]  # the default's size, counted for tenant a alone
    assert [r.status_code for r in b] == [200, 200, 429]  # b's own budget, untouched by a's
    assert "tenant 'b'" in b[2].json()["error"]["message"]  # the counter is b's, named so
    assert "2 requests per minute" in b[2].json()["error"]["message"]
    assert c == [200, 429]  # an entry of its own wins over the default


@pytest.mark.parametrize("path", ["/v1/guard/check", "/v1/chat/completions"])
def test_a_request_refused_by_one_budget_spends_no_other(gateway: GatewayFactory, path: str) -> None:
    keys = [
        {"key": "sk-ci", "tenant": "acme", "name": "ci-bot"},
        {"key": "sk-web", "tenant": "acme", "name": "web"},
    ]
    limits = {"tenants": {"acme": {"rpm": 6}}, "keys": {"ci-bot": {"rpm": 2}}}
    body: dict[str, Any] = _chat() if path.endswith("completions") else {"messages": _chat()["messages"]}
    with gateway(gateway={"api_keys": keys}, policies=[], rate_limits=limits) as url:

        def send(key: str) -> int:
            auth = {"Authorization": f"Bearer {key}"}
            return httpx.post(f"{url}{path}", json=body, headers=auth, timeout=30).status_code

        ci = [send("sk-ci") for _ in range(6)]
        web = [send("sk-web") for _ in range(5)]
    assert ci == [200, 200, 429, 429, 429, 429]  # refused by the key's budget ...
    assert web == [200, 200, 200, 200, 429]  # ... spent none of the tenant's: 6 - 2 left for web


def test_a_stream_the_client_leaves_before_its_usage_is_charged_an_estimate(
    gateway: GatewayFactory, stub: Stub, redis_url: str
) -> None:
    head = "The first part of the reply arrives at once and leaves the hold-back window. " * 4
    stub.script(
        "scripted",
        {"chunks": [{"content": head, "role": "assistant"}, {"delay_ms": 4000}, {"content": "tail"}]},
    )
    prompt = "count these words please " * 8  # 200 characters: 50 tokens at 4 characters each
    body = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    with gateway(policies=[], rate_limits={"tenants": {"default": {"tpm": 60}}}) as url:
        received = ""
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp,
        ):
            assert resp.status_code == 200
            for line in resp.iter_lines():
                if line.startswith("data: {"):
                    received += "".join(
                        c["delta"].get("content") or "" for c in json.loads(line[6:])["choices"]
                    )
                if received:
                    break  # gone before the usage chunk (the stub is mid-pause)
        expected = 50 + math.ceil(len(received) / 4)  # prompt + the completion the client got
        spent: list[str] = []
        for _ in range(100):  # charged in a task once the relay has cleaned up
            spent = [store.get(k) or "" for k in store.keys("*tpm*tenant*default*")]
            if spent:
                break
            time.sleep(0.05)
        after = httpx.post(f"{url}/v1/chat/completions", json=_chat(), timeout=10)
    store.close()
    assert received and spent == [str(expected)], (received, spent)
    assert after.status_code == 429  # the 60-token budget is spent by the stream the client left
    assert "tenant 'default': 60 tokens per minute" in after.json()["error"]["message"]


@pytest.mark.parametrize(("tenant_rpm", "key_rpm"), [(10000, 150), (150, 10000), (160, 150)])
def test_concurrent_refusals_leave_no_count_in_the_other_budget(
    redis_url: str, tenant_rpm: int, key_rpm: int
) -> None:
    """600 requests, 48 at once, over two limiters (two processes' worth) on one store."""
    settings = RateLimitSettings.model_validate(
        {"tenants": {"t": {"rpm": tenant_rpm}}, "keys": {"k": {"rpm": key_rpm}}, "store_timeout_ms": 5000}
    )

    async def go() -> int:
        limiters = [RateLimits.start(settings, redis_url), RateLimits.start(settings, redis_url)]
        gate = asyncio.Semaphore(48)

        async def one(i: int) -> bool:
            limiter = limiters[i % 2]
            ticket = limiter.ticket("t", "k")
            assert ticket is not None
            async with gate:
                try:
                    await limiter.admit(ticket)
                except RateLimited:
                    return False
                return True

        admitted = sum(await asyncio.gather(*(one(i) for i in range(600))))
        for limiter in limiters:
            await limiter.aclose()
        return admitted

    admitted = asyncio.run(go())
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    counts = {k.split("/")[1]: store.llen(k) for k in store.keys("rollguard:ratelimit:rpm/*")}
    store.close()
    assert admitted == min(tenant_rpm, key_rpm)
    assert counts == {"tenant": admitted, "key": admitted}  # the refused counted in neither


def test_a_request_refused_for_a_full_audit_store_spends_no_rate_budget(
    stub: Stub, redis_url: str, tmp_path: Path
) -> None:
    config = base_config(
        stub,
        redis_url,
        policies=[],
        store={"redis_url": redis_url, "data_dir": str(tmp_path / "var"), "max_buffer": 100},
        rate_limits={"tenants": {"default": {"rpm": 1}}},
    )
    app = create_app(RollguardSettings(**config))
    with serve_app(app) as srv:
        store = app.state.runtime.store
        held = []
        while store.room() > 0:  # the buffer's every place taken: the next request gets a 503
            held.append(store.reserve())
        full = httpx.post(f"{srv.url}/v1/chat/completions", json=_chat(), timeout=10)
        for reservation in held:
            reservation.release()
        after = httpx.post(f"{srv.url}/v1/chat/completions", json=_chat(), timeout=10)
    assert full.status_code == 503 and full.json()["error"]["code"] == "store_unavailable"
    assert after.status_code == 200, after.text  # the 503 did not spend the 1 rpm


def test_a_non_streamed_request_the_client_leaves_is_charged_its_prompt(
    gateway: GatewayFactory, stub: Stub, redis_url: str
) -> None:
    stub.script("scripted", {"delay_ms": 3000}, times=None)
    prompt = "count these words please " * 8  # 200 characters: 50 tokens at 4 characters each
    body = {"model": "scripted", "messages": [{"role": "user", "content": prompt}]}
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    with gateway(policies=[], rate_limits={"tenants": {"default": {"tpm": 40}}}) as url:
        with pytest.raises(httpx.ReadTimeout):  # gone while the upstream works: cancelled, a 499
            httpx.post(f"{url}/v1/chat/completions", json=body, timeout=0.5)
        spent: list[str] = []
        for _ in range(100):
            spent = [store.get(k) or "" for k in store.keys("*tpm*tenant*default*")]
            if spent:
                break
            time.sleep(0.05)
        after = httpx.post(f"{url}/v1/chat/completions", json=_chat(), timeout=10)
    store.close()
    assert stub.calls() == 1 and spent == ["50"], spent  # the upstream read the prompt
    assert after.status_code == 429
