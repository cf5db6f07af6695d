"""A plain connection to the store for the command-line tools that read it or change a few keys
(``review export``, ``rollout list|show|start|...``, ``flags kill|list|...``).

Unlike ``Store`` (the gateway's buffered audit writer) it never degrades: a server that does not
answer raises ``StoreError`` at once, for the command to report in its own words; it adopts no
spool files, writes back no spilled records and starts no background task, so running a tool next
to a gateway never touches the gateway's audit records. With no ``store.redis_url`` it starts (or
reuses) the embedded Valkey under ``store.data_dir`` and stops it again if it started it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.store.embedded import EmbeddedValkey
from gateway.store.errors import redact_url, redis_errors
from rollguard.settings import StoreSettings

CONNECT_TIMEOUT_S = 2.0
"""Seconds to wait for the server's TCP connection (the same as the gateway's ``Store``)."""


@contextlib.asynccontextmanager
async def connect(settings: StoreSettings) -> AsyncIterator[aioredis.Redis]:
    """A connected client (string replies) for the configured store. Raises ``StoreUnavailable`` /
    ``StoreTimeout`` (``StoreError``) when the server does not answer, ``StoreError`` when the
    embedded server cannot start."""
    embedded: EmbeddedValkey | None = None
    url = settings.redis_url
    if url is None:
        embedded = EmbeddedValkey(settings.data_dir)
        url = await asyncio.to_thread(embedded.acquire)
    client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=CONNECT_TIMEOUT_S)
    try:
        with redis_errors(f"Redis at {redact_url(url)} does not answer", detail=True):
            await client.ping()
        yield client
    finally:
        with contextlib.suppress(RedisError, OSError):
            await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.release)
