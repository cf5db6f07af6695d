"""Per-deployment ``rpm`` / ``tpm`` (LiteLLM ``litellm_params`` names) honoured by the router: a
deployment at its limit is skipped for another of its alias, then the fallbacks, else 429 with
Retry-After. Router logic over ``InMemoryTransport`` with the ``limits`` memory storage; the
store-backed path runs in tests/integration/test_rate_limits.py."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.ratelimit import DeploymentsAtLimit
from gateway.upstream import Upstream
from rollguard.errors import UpstreamOverloaded, UpstreamRateLimited
from rollguard.settings import RollguardSettings
from rollguard.testing import InMemoryTransport, Reply, ScriptedCall, Stream, chunks_of, completion


def entry(alias: str, model: str, **limits: int) -> dict[str, Any]:
    return {
        "model_name": alias,
        "litellm_params": {"model": f"openai/{model}", "api_base": "http://upstream.test/v1", **limits},
    }


def make(models: list[dict[str, Any]], transport: InMemoryTransport, **router: Any) -> Upstream:
    router.setdefault("num_retries", 0)
    return Upstream(RollguardSettings(model_list=models, router_settings=router), transport=transport)


def ask() -> dict[str, Any]:
    return {"model": "alias", "messages": [{"role": "user", "content": "hi"}]}


async def test_deployment_at_its_rpm_is_skipped_then_429() -> None:
    transport = InMemoryTransport(replies=[completion()])
    up = make([entry("alias", "small", rpm=2), entry("alias", "big", rpm=3)], transport)
    for _ in range(5):
        await up.complete("alias", ask())
    assert sorted(c.model for c in transport.calls) == ["big", "big", "big", "small", "small"]
    with pytest.raises(UpstreamRateLimited, match="at its rpm/tpm limit") as err:
        await up.complete("alias", ask())
    assert err.value.retry_after is not None and 1 <= err.value.retry_after <= 60
    assert len(transport.calls) == 5  # the sixth never reached an upstream
    await up.aclose()


async def test_spent_deployment_falls_back() -> None:
    transport = InMemoryTransport(replies=[completion()])
    up = make(
        [entry("alias", "primary", rpm=1), entry("backup", "spare")],
        transport,
        fallbacks=[{"alias": ["backup"]}],
    )
    await up.complete("alias", ask())
    await up.complete("alias", ask())
    assert [c.model for c in transport.calls] == ["primary", "spare"]
    await up.aclose()


async def test_tpm_is_charged_from_usage_also_for_streams() -> None:
    reply = completion(usage={"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10})
    transport = InMemoryTransport(replies=[Stream(chunks_of(reply)), reply])
    up = make([entry("alias", "only", tpm=15)], transport)
    async for _ in up.stream("alias", {**ask(), "stream": True}):
        pass
    await up.complete("alias", ask())  # 10 < 15 tokens spent: admitted, now 20
    with pytest.raises(UpstreamRateLimited):
        await up.complete("alias", ask())
    assert len(transport.calls) == 2
    await up.aclose()


async def test_no_limits_no_metering() -> None:
    up = make([entry("alias", "a")], InMemoryTransport(replies=[completion()]))
    assert not up._limits.metered  # the hot path skips the limiter entirely
    await up.aclose()


async def test_a_refusal_is_refundable_only_when_no_upstream_was_reached() -> None:
    """``DeploymentsAtLimit`` (the caller's budgets get the request back) only when no attempt of
    the request reached an upstream; after a called primary failed, the spent fallback's 429 is a
    plain ``UpstreamRateLimited`` (the request stays counted)."""

    def answer(call: ScriptedCall) -> Reply:
        return UpstreamOverloaded("primary busy") if call.model == "primary" else completion()

    transport = InMemoryTransport(answer)
    up = make(
        [entry("alias", "primary"), entry("backup", "spare", rpm=1)],
        transport,
        fallbacks=[{"alias": ["backup"]}],
    )
    await up.complete("backup", ask())  # the fallback's one request of the minute
    with pytest.raises(UpstreamRateLimited) as reached:
        await up.complete("alias", ask())
    assert not isinstance(reached.value, DeploymentsAtLimit)
    assert [c.model for c in transport.calls] == ["spare", "primary"]
    assert reached.value.retry_after is not None and reached.value.retry_after >= 1
    with pytest.raises(DeploymentsAtLimit):  # asked directly: no upstream reached
        await up.complete("backup", ask())
    assert len(transport.calls) == 2
    await up.aclose()
