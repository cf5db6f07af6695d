"""Fixtures for the review tests: an async client on the real test Redis and a queue store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.review.queue import ReviewQueues


@pytest.fixture()
async def aredis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True, max_connections=200)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture()
def queues(aredis: aioredis.Redis) -> ReviewQueues:
    return ReviewQueues(aredis, lease_ms=60_000, retention_s=3600)
