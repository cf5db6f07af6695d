"""The store boundary's pure parts: the one redis -> StoreError mapper, consumer names unique per
process, and the exemplar records the worker puts in anomaly bundles (bounded); plus the mapper
on a real refused connection."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.review.auth import ReviewAuth
from gateway.review.config import parse_review_settings
from gateway.store.errors import redis_boundary, redis_errors
from gateway.store.keys import consumer_name
from gateway.store.streams import ensure_group, forget_idle_consumers
from gateway.worker.exemplars import ExemplarCache, ExemplarLimits
from rollguard.errors import StoreError, StoreTimeout, StoreUnavailable


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (RedisTimeoutError("slow"), StoreTimeout),
        (RedisConnectionError("refused"), StoreUnavailable),
        (ResponseError("WRONGTYPE"), StoreError),
    ],
)
def test_redis_errors_maps_to_the_most_specific_store_error(raised: Exception, expected: type) -> None:
    with pytest.raises(expected) as info, redis_errors("cannot read x"):
        raise raised
    assert type(info.value) is expected
    assert info.value.__cause__ is raised
    assert isinstance(info.value, StoreError)
    assert info.value.message == f"cannot read x: {type(raised).__name__}"  # no redis text by default


async def test_redis_boundary_maps_a_coroutine_and_passes_other_errors() -> None:
    @redis_boundary("review store failed")
    async def broken(kind: str) -> int:
        if kind == "redis":
            raise RedisConnectionError("gone")
        raise KeyError(kind)

    assert broken.__name__ == "broken"
    with pytest.raises(StoreUnavailable, match="review store failed"):
        await broken("redis")
    with pytest.raises(KeyError):
        await broken("other")


async def test_a_refused_connection_is_store_unavailable_for_review_sessions() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
    auth = ReviewAuth(parse_review_settings({}), client)
    try:
        with pytest.raises(StoreUnavailable, match="cannot read the review session"):
            await auth.by_session("sid")
    finally:
        await client.aclose()


def test_consumer_names_are_unique_per_process_and_start() -> None:
    a, b = consumer_name("review"), consumer_name("review")
    assert a != b
    assert a.startswith(f"review-{socket.gethostname()}-")
    assert a.split("-")[-2] == str(__import__("os").getpid())


def _rec(i: int, text: str = "hello") -> dict[str, Any]:
    return {
        "id": f"ix-{i}",
        "tenant": "acme",
        "messages": [{"role": "user", "content": text}],
        "completion": text,
        "metadata": {"variant": "canary"},
        "usage": {"total_tokens": 3},
    }


def test_exemplar_cache_keeps_the_newest_records_cut_to_the_text_limit() -> None:
    cache = ExemplarCache(ExemplarLimits(max_records=3, text_chars=5))
    cache.remember([_rec(i, "abcdefgh") for i in range(5)])
    assert len(cache) == 3
    bundle = cache.with_exemplars({"id": "an-1", "exemplar_ids": ["ix-0", "ix-4", "ix-3"]})
    records = bundle["exemplar_records"]
    assert [r["id"] for r in records] == ["ix-4", "ix-3"]  # ix-0 was evicted
    assert records[0]["completion"] == "abcde" and records[0]["messages"][0]["content"] == "abcde"
    assert "usage" not in records[0]  # only the fields a reviewer sees
    assert bundle["id"] == "an-1" and bundle["exemplar_ids"] == ["ix-0", "ix-4", "ix-3"]


def test_exemplar_records_are_bounded_in_count_and_bytes() -> None:
    cache = ExemplarCache(ExemplarLimits(max_exemplars=3, max_bundle_bytes=10_000, text_chars=2_000))
    cache.remember([_rec(i, "x" * 1_500) for i in range(10)])
    ids = [f"ix-{i}" for i in range(10)]
    by_count = cache.with_exemplars({"exemplar_ids": ids})["exemplar_records"]
    assert [r["id"] for r in by_count] == ["ix-0", "ix-1", "ix-2"]
    small = ExemplarCache(ExemplarLimits(max_bundle_bytes=7_000))
    small.remember([_rec(i, "x" * 1_500) for i in range(10)])
    by_size = small.with_exemplars({"exemplar_ids": ids})["exemplar_records"]
    assert len(orjson.dumps(by_size)) <= 7_000 and len(by_size) == 2


def test_multimodal_message_parts_are_cut_too() -> None:
    cache = ExemplarCache(ExemplarLimits(text_chars=3))
    rec = _rec(1)
    rec["messages"] = [
        {"role": "user", "content": [{"type": "text", "text": "abcdef"}, {"type": "image_url"}]}
    ]
    cache.remember([rec])
    (out,) = cache.with_exemplars({"exemplar_ids": ["ix-1"]})["exemplar_records"]
    assert out["messages"][0]["content"] == [{"type": "text", "text": "abc"}, {"type": "image_url"}]


async def test_idle_consumers_with_nothing_pending_are_forgotten(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await ensure_group(client, "s", "g")
        await client.xadd("s", {"f": "1"})
        await client.xreadgroup("g", "holder", {"s": ">"}, count=1)  # keeps one pending entry
        await client.xreadgroup("g", "gone", {"s": ">"}, count=1)  # read nothing: nothing pending
        await asyncio.sleep(0.05)
        assert await forget_idle_consumers(client, "s", "g", idle_ms=10_000) == []  # not idle long enough
        assert await forget_idle_consumers(client, "s", "g", idle_ms=20) == ["gone"]
        assert [c["name"] for c in await client.xinfo_consumers("s", "g")] == ["holder"]
    finally:
        await client.aclose()
