"""The upstream's ``Retry-After`` (RFC 9110 10.2.3) and OpenAI's ``retry-after-ms`` on a 429 or
503, against the real stub upstream over real sockets, on both paths (lean aiohttp and litellm):
the retry waits that long, moves to a free deployment or a fallback at once, never waits past the
request's budget, and garbage in the header is ignored or capped."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator

import pytest
from multidict import CIMultiDict

from gateway.demo.upstream import start_stub
from gateway.upstream import Upstream
from gateway.upstream.errors import MAX_RETRY_AFTER, parse_retry_after
from rollguard.errors import UpstreamOverloaded, UpstreamRateLimited
from tests.gateway.test_upstream import PATHS, Stub, ask, collect, entry, make, text_of

pytestmark = pytest.mark.integration

NOW = 1_800_000_000.0  # a fixed Unix time for the HTTP-date cases


@pytest.fixture()
async def stub() -> AsyncIterator[Stub]:
    runner, base = await start_stub()
    yield Stub(runner, base)
    await runner.cleanup()


# ---------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "1"}, 1.0),
        ({"retry-after": " 2 "}, 2.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),  # the SDKs read -ms first
        ({"retry-after-ms": "12.5"}, 0.0125),
        ({"Retry-After": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"Retry-After": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),  # past: now
        ({"Retry-After": "99999999999999999999"}, MAX_RETRY_AFTER),  # huge: capped
        ({"retry-after-ms": "1e30"}, MAX_RETRY_AFTER),
        ({"Retry-After": email.utils.formatdate(NOW + 10**7, usegmt=True)}, MAX_RETRY_AFTER),
        # garbage: ignored
        ({"Retry-After": "-5"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "1e3"}, None),
        ({"Retry-After": "Fri, 99 Foo 2023 25:61:00 GMT"}, None),
        ({"Retry-After": "Mon, 01 Jan 99999 00:00:00 GMT"}, None),
        ({"retry-after-ms": "-1"}, None),
        ({"retry-after-ms": "nan", "Retry-After": "3"}, 3.0),  # a bad -ms falls back to Retry-After
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    got = parse_retry_after(CIMultiDict(headers), now=NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)
    assert parse_retry_after(None) is None


# ---------------------------------------------------------------------------------------- waits


async def _call(up: Upstream, alias: str, stream: bool, text: str = "after the wait") -> str:
    if stream:
        return text_of(await collect(await up.open_stream(alias, ask(text, stream=True))))
    resp = await up.complete(alias, ask(text))
    return str(resp["choices"][0]["message"]["content"])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("status", "headers", "at_least"),
    [(429, {"Retry-After": "1"}, 0.95), (503, {"retry-after-ms": "400"}, 0.38)],
    ids=["429-seconds", "503-ms"],
)
async def test_retry_waits_as_long_as_the_upstream_asks(
    stub: Stub, path: str, stream: bool, status: int, headers: dict[str, str], at_least: float
) -> None:
    up = make([entry("alias", "echo", stub.base, path)], num_retries=1, timeout=5.0)
    try:
        await _call(up, "alias", stream)  # warm: litellm's first call alone can take a second
        stub.script("echo", {"status": status, "headers": headers}, times=1)
        t0 = time.perf_counter()
        text = await _call(up, "alias", stream)
        elapsed = time.perf_counter() - t0
    finally:
        await up.aclose()
    assert text == "after the wait"
    assert stub.calls("echo") == 3
    assert at_least <= elapsed < at_least + 1.5, elapsed


async def test_http_date_retry_after_is_honoured(stub: Stub) -> None:
    up = make([entry("alias", "echo", stub.base)], num_retries=1, timeout=5.0)
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1..2 s away
    stub.script("echo", {"status": 429, "headers": {"Retry-After": when}}, times=1)
    try:
        t0 = time.perf_counter()
        await up.complete("alias", ask())
        elapsed = time.perf_counter() - t0
    finally:
        await up.aclose()
    assert 0.9 <= elapsed < 3.0, elapsed
    assert stub.calls("echo") == 2


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_wait_beyond_the_budget_gives_up_at_once_with_the_hint(
    stub: Stub, path: str, stream: bool
) -> None:
    up = make([entry("alias", "echo", stub.base, path)], num_retries=3, timeout=2.0)
    stub.script("echo", {"status": 429, "headers": {"Retry-After": "30"}})
    try:
        t0 = time.perf_counter()
        with pytest.raises(UpstreamRateLimited) as caught:
            await _call(up, "alias", stream)
        elapsed = time.perf_counter() - t0
    finally:
        await up.aclose()
    assert stub.calls("echo") == 1  # no hammering, no waiting past the budget
    assert elapsed < 1.0
    assert caught.value.retry_after == 30.0


@pytest.mark.parametrize("path", PATHS)
async def test_upstream_503_is_overloaded_with_its_hint(stub: Stub, path: str) -> None:
    up = make([entry("alias", "echo", stub.base, path)], num_retries=0)
    stub.script("echo", {"status": 503, "headers": {"Retry-After": "7"}})
    try:
        with pytest.raises(UpstreamOverloaded) as caught:
            await up.complete("alias", ask())
    finally:
        await up.aclose()
    assert caught.value.status == 503 and caught.value.code == "upstream_overloaded"
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize("path", PATHS)
async def test_a_cooling_deployment_is_skipped_for_a_free_one(stub: Stub, path: str) -> None:
    up = make(
        [entry("alias", "echo", stub.base, path), entry("alias", "echo-2", stub.base, path)],
        num_retries=1,
        timeout=10.0,
    )
    stub.script("echo", {"status": 429, "headers": {"Retry-After": "5"}})
    try:
        t0 = time.perf_counter()
        for _ in range(3):
            assert await _call(up, "alias", stream=False) == "after the wait"
        elapsed = time.perf_counter() - t0
    finally:
        await up.aclose()
    assert elapsed < 2.0  # moved on at once, no 5 s wait
    assert stub.calls("echo") == 1  # cooling down: later requests go straight to echo-2
    assert stub.calls("echo-2") == 3


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_fallback_answers_at_once_instead_of_waiting(stub: Stub, path: str, stream: bool) -> None:
    up = make(
        [entry("primary", "broken", stub.base, path), entry("backup", "echo", stub.base, path)],
        num_retries=2,
        timeout=10.0,
        fallbacks=[{"primary": ["backup"]}],
    )
    stub.script("broken", {"status": 503, "headers": {"Retry-After": "5"}})
    try:
        t0 = time.perf_counter()
        assert await _call(up, "primary", stream) == "after the wait"
        elapsed = time.perf_counter() - t0
        assert await _call(up, "primary", stream) == "after the wait"  # primary still cooling
    finally:
        await up.aclose()
    assert elapsed < 2.0
    assert stub.calls("broken") == 1  # the second request went straight to the fallback
    assert stub.calls("echo") == 2


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("value", "retried"),
    [("-3", True), ("soon", True), ("NaN", True), ("99999999999999999999999", False)],
)
async def test_garbage_retry_after_is_ignored_or_capped(
    stub: Stub, path: str, value: str, retried: bool
) -> None:
    up = make([entry("alias", "echo", stub.base, path)], num_retries=1, timeout=5.0)
    stub.script("echo", {"status": 429, "headers": {"Retry-After": value}}, times=1)
    try:
        t0 = time.perf_counter()
        if retried:  # ignored: retried at once, as without a hint
            assert await _call(up, "alias", stream=False) == "after the wait"
        else:  # capped to MAX_RETRY_AFTER, beyond the budget: the 429 with the capped hint
            with pytest.raises(UpstreamRateLimited) as caught:
                await _call(up, "alias", stream=False)
            assert caught.value.retry_after == MAX_RETRY_AFTER
        elapsed = time.perf_counter() - t0
    finally:
        await up.aclose()
    assert elapsed < 1.0
    assert stub.calls("echo") == (2 if retried else 1)
