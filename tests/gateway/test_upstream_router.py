"""The upstream router (aliases, round-robin, retries, fallbacks, Retry-After cooldowns) over
``rollguard.testing.InMemoryTransport``: no sockets. The transports themselves are tested over
real sockets in test_upstream.py and test_upstream_retry_after.py."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.upstream import Upstream
from rollguard.errors import (
    NotFound,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from rollguard.settings import RollguardSettings
from rollguard.testing import InMemoryTransport, ScriptedCall, Stream, chunks_of, completion


def entry(alias: str, model: str) -> dict[str, Any]:
    return {
        "model_name": alias,
        "litellm_params": {"model": f"openai/{model}", "api_base": "http://upstream.test/v1"},
    }


def make(models: list[dict[str, Any]], transport: InMemoryTransport, **router: Any) -> Upstream:
    router.setdefault("num_retries", 0)
    router.setdefault("timeout", 5.0)
    return Upstream(RollguardSettings(model_list=models, router_settings=router), transport=transport)


def ask(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "alias", "messages": [{"role": "user", "content": text}], **extra}


async def test_no_fallback_on_bad_request() -> None:
    transport = InMemoryTransport(
        lambda call: UpstreamBadRequest("context too long") if call.model == "broken" else completion()
    )
    up = make(
        [entry("primary", "broken"), entry("backup", "echo")], transport, fallbacks=[{"primary": ["backup"]}]
    )
    with pytest.raises(UpstreamBadRequest, match="context too long"):
        await up.complete("primary", ask())
    await up.aclose()
    assert [c.model for c in transport.calls] == ["broken"]  # no call to echo
    assert transport.closed


async def test_deployments_of_one_alias_round_robin() -> None:
    transport = InMemoryTransport(replies=[completion()])
    up = make([entry("alias", "echo"), entry("alias", "echo-2")], transport)
    for _ in range(4):
        await up.complete("alias", ask())
    models = [c.model for c in transport.calls]
    assert models.count("echo") == 2 and models.count("echo-2") == 2


async def test_body_is_not_modified_and_model_is_replaced_per_deployment() -> None:
    transport = InMemoryTransport(replies=[completion("hi", model="echo")])
    up = make([entry("alias", "echo")], transport)
    body = ask(temperature=0.2)
    resp = await up.complete("alias", body)
    assert resp["choices"][0]["message"]["content"] == "hi"
    assert body["model"] == "alias"
    assert transport.calls[0].body["temperature"] == 0.2 and transport.calls[0].stream is False
    assert transport.calls[0].timeout_s == 5.0


async def test_retry_then_success_and_retries_exhausted() -> None:
    transport = InMemoryTransport(replies=[UpstreamUnavailable("down"), completion("again")])
    up = make([entry("alias", "echo")], transport, num_retries=2)
    resp = await up.complete("alias", ask())
    assert resp["choices"][0]["message"]["content"] == "again" and len(transport.calls) == 2
    failing = InMemoryTransport(replies=[UpstreamTimeout("slow")])
    up = make([entry("alias", "echo")], failing, num_retries=2)
    with pytest.raises(UpstreamTimeout):
        await up.complete("alias", ask())
    assert len(failing.calls) == 3


async def test_fallback_after_retries_each_with_its_own_retries() -> None:
    def answer(call: ScriptedCall) -> Any:
        return UpstreamRateLimited("busy") if call.model == "broken" else completion("fell back")

    transport = InMemoryTransport(answer)
    up = make(
        [entry("primary", "broken"), entry("backup", "echo")],
        transport,
        num_retries=1,
        retry_after=0,
        fallbacks=[{"primary": ["backup"]}],
    )
    resp = await up.complete("primary", ask())
    assert resp["choices"][0]["message"]["content"] == "fell back"
    assert [c.model for c in transport.calls] == ["broken", "broken", "echo"]


async def test_retry_after_cools_a_deployment_for_later_requests() -> None:
    hinted = UpstreamRateLimited("slow down")
    hinted.retry_after = 5.0

    def answer(call: ScriptedCall) -> Any:
        return hinted if call.model == "echo" else completion("free")

    transport = InMemoryTransport(answer)
    up = make([entry("alias", "echo"), entry("alias", "echo-2")], transport, num_retries=1, timeout=10.0)
    t0 = time.perf_counter()
    for _ in range(3):
        assert (await up.complete("alias", ask()))["choices"][0]["message"]["content"] == "free"
    assert time.perf_counter() - t0 < 2.0  # moved on at once, no 5 s wait
    assert [c.model for c in transport.calls].count("echo") == 1


async def test_stream_retried_before_its_first_chunk_never_after() -> None:
    transport = InMemoryTransport(
        replies=[Stream([UpstreamUnavailable("broken start")]), completion("streamed")]
    )
    up = make([entry("alias", "echo")], transport, num_retries=1)
    chunks = [c async for c in up.stream("alias", ask(stream=True))]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "streamed" and len(transport.calls) == 2
    assert transport.calls[1].stream is True

    first = chunks_of(completion("partial answer"))[:2]
    broken = InMemoryTransport(replies=[Stream([*first, UpstreamUnavailable("cut")]), completion()])
    up = make([entry("alias", "echo")], broken, num_retries=3)
    s = await up.open_stream("alias", ask(stream=True))
    with pytest.raises(UpstreamUnavailable, match="cut"):
        async with s:
            async for _ in s:
                pass
    assert len(broken.calls) == 1  # bytes may be with the client: no retry


async def test_unknown_alias_is_not_found() -> None:
    up = make([entry("alias", "echo")], InMemoryTransport(replies=[completion()]))
    with pytest.raises(NotFound):
        await up.complete("nope", ask())


def test_a_transport_needs_a_script() -> None:
    with pytest.raises(AssertionError):
        InMemoryTransport()
