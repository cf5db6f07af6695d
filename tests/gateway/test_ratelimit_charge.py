"""``gateway.ratelimit.charged``: a reply's tokens are charged once it is over, and wrapping a
stream never delays the relay's own cleanup (which records the interaction). ``limits``' memory
storage stands in for the store here; the store-backed path runs in
tests/integration/test_rate_limits.py."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import orjson
from limits.aio.storage import MemoryStorage

from gateway.exchange import ChatResult
from gateway.ratelimit import DeploymentsAtLimit, RateLimits, charged, estimated_tokens, settle
from rollguard.errors import RateLimited, UpstreamRateLimited
from rollguard.ratelimit_settings import RateLimitSettings
from rollguard.types import Interaction


def interaction() -> Interaction:
    return Interaction(
        id="rg-1", created_ms=0, tenant="t", model="m", subject=None, session=None, stream=True, messages=[]
    )


def limiter() -> RateLimits:
    settings = RateLimitSettings.model_validate({"tenants": {"t": {"tpm": 10}}})
    return RateLimits(settings, MemoryStorage())


async def test_closing_the_wrapper_at_its_yield_closes_the_relay_and_charges() -> None:
    rec = interaction()
    cleaned: list[str] = []

    async def relay() -> AsyncIterator[bytes]:
        try:
            yield b"data: one\n\n"
            yield b"data: two\n\n"
        finally:
            rec.usage = {"total_tokens": 12}  # the relay's cleanup sets the usage it saw
            cleaned.append("relay")

    limits = limiter()
    ticket = limits.ticket("t", None)
    assert ticket is not None
    result = charged(ChatResult(interaction=rec, stream=relay()), ticket, limits)
    assert result.stream is not None
    it = result.stream.__aiter__()
    assert await it.__anext__() == b"data: one\n\n"
    await it.aclose()  # as RelayResponse does when the client goes while a chunk is out
    assert cleaned == ["relay"]  # at once, not when the garbage collector finds the generator
    for _ in range(10):
        await asyncio.sleep(0)  # the charge runs in its own task
    try:
        await limits.admit(ticket)
    except RateLimited as exc:
        assert "10 tokens per minute" in str(exc)
    else:
        raise AssertionError("the 12 tokens of the closed stream were not charged")


async def test_json_reply_charged_after_its_audit_write() -> None:
    rec = interaction()
    rec.usage = {"prompt_tokens": 7, "completion_tokens": 5}
    order: list[str] = []

    async def audit() -> None:
        order.append("audit")

    limits = limiter()
    ticket = limits.ticket("t", None)
    assert ticket is not None
    result = charged(ChatResult(interaction=rec, completion={}, after=audit), ticket, limits)
    assert result.after is not None
    await result.after()
    assert order == ["audit"]
    try:
        await limits.admit(ticket)
    except RateLimited:
        pass
    else:
        raise AssertionError("7 + 5 tokens were not charged")


def test_the_estimate_counts_prompt_and_delivered_completion_at_4_characters_a_token() -> None:
    rec = interaction()
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    rec.messages = [
        {"role": "system", "content": "x" * 10},  # 10
        {
            "role": "user",
            "content": [{"type": "text", "text": "y" * 7}, {"type": "image_url", "image_url": {}}],
        },
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]
    rec.completion = "z" * 9
    calls_chars = len(orjson.dumps([call]))
    assert estimated_tokens(rec) == math.ceil((10 + 7 + calls_chars) / 4) + math.ceil(9 / 4)
    rec.messages, rec.completion = [], None
    assert estimated_tokens(rec) == 0


async def test_a_stream_without_usage_is_charged_the_estimate_a_json_error_nothing() -> None:
    async def relay() -> AsyncIterator[bytes]:
        yield b"data: one\n\n"

    limits = limiter()
    ticket = limits.ticket("t", None)
    assert ticket is not None
    errored = interaction()
    errored.messages = [{"role": "user", "content": "w" * 400}]  # 100 tokens, but no reply
    plain = charged(ChatResult(interaction=errored), ticket, limits)
    assert plain.after is not None
    await plain.after()
    await limits.admit(ticket)  # a JSON reply without usage (an error) charges nothing
    rec = interaction()
    rec.messages = [{"role": "user", "content": "w" * 40}]  # 10 tokens: the 10 tpm budget
    result = charged(ChatResult(interaction=rec, stream=relay()), ticket, limits)
    assert result.stream is not None
    assert [c async for c in result.stream] == [b"data: one\n\n"]
    for _ in range(10):
        await asyncio.sleep(0)
    try:
        await limits.admit(ticket)
    except RateLimited:
        pass
    else:
        raise AssertionError("the stream that ended without usage was not charged")


async def test_a_request_no_deployment_could_take_is_refunded_other_errors_are_not() -> None:
    """Defect: a deployment-level 429 (every deployment at its rpm/tpm, no upstream called) kept
    the caller's request counted. ``settle`` refunds exactly that refusal."""
    settings = RateLimitSettings.model_validate({"tenants": {"t": {"rpm": 2}}})
    limits = RateLimits(settings, MemoryStorage())
    ticket = limits.ticket("t", None)
    assert ticket is not None
    busy = DeploymentsAtLimit("every deployment of model 'm' is at its rpm/tpm limit")
    assert (busy.status, busy.code) == (429, "upstream_rate_limited")
    for _ in range(5):  # five refusals in a row: none stays counted
        await limits.admit(ticket)
        await settle(ChatResult(interaction=interaction(), error=busy), ticket, limits)
    await limits.admit(ticket)
    await limits.admit(ticket)  # both requests of the 2 rpm are still there
    # an upstream's own failure was a call made: it stays counted
    settings = RateLimitSettings.model_validate({"tenants": {"t": {"rpm": 1}}})
    limits = RateLimits(settings, MemoryStorage())
    ticket = limits.ticket("t", None)
    assert ticket is not None
    await limits.admit(ticket)
    upstream_429 = UpstreamRateLimited("upstream 429")
    await settle(ChatResult(interaction=interaction(), error=upstream_429), ticket, limits)
    try:
        await limits.admit(ticket)
    except RateLimited:
        pass
    else:
        raise AssertionError("an upstream's own 429 was refunded")
