"""Consumer groups and retention of the store's streams (a part of ``Store``): thin methods over
``gateway.store.streams`` on the store's client, and the background retention loop."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from gateway.store import streams
from gateway.store.tenant_retention import TenantRetention, purge_expired
from rollguard.errors import StoreError
from rollguard.settings import StoreSettings

log = logging.getLogger("rollguard.store")


class StreamUpkeep:
    """Mixed into ``Store``: needs ``redis``, ``stream``, ``settings``, ``retention_check_s`` and
    the ``trimmed`` counter."""

    settings: StoreSettings
    stream: str
    retention_check_s: float
    trimmed: int
    tenant_retention: TenantRetention
    _tenant_cursors: dict[int, str] | None = None

    @property
    def redis(self) -> aioredis.Redis:
        raise NotImplementedError

    async def ensure_group(self, stream: str, group: str, start_id: str = "0") -> None:
        """``gateway.store.streams.ensure_group`` on this store's client. Raises ``StoreError``."""
        await streams.ensure_group(self.redis, stream, group, start_id)

    async def safe_min_id(self, stream: str, retention_ms: int, now_ms: int | None = None) -> str:
        """``gateway.store.streams.safe_min_id`` on this store's client. Raises ``StoreError``."""
        return await streams.safe_min_id(self.redis, stream, retention_ms, now_ms)

    async def trim_stream(self, stream: str, retention_ms: int, now_ms: int | None = None) -> int:
        """Drop entries older than ``retention_ms`` that every consumer group has acknowledged
        (``gateway.store.streams.trim_stream``). Returns the number of entries removed. Raises
        ``StoreError``."""
        removed = await streams.trim_stream(self.redis, stream, retention_ms, now_ms)
        self.trimmed += removed
        return removed

    async def trim_interactions(self, now_ms: int | None = None) -> int:
        """``trim_stream`` on the interactions stream with ``retention_ms`` from the settings."""
        return await self.trim_stream(self.stream, self.settings.retention_ms, now_ms)

    async def purge_tenants(self, now_ms: int | None = None) -> int:
        """Delete the interaction records older than their tenant's ``retention_ms``
        (``gateway.store.tenant_retention.purge_expired``). Returns the number deleted. Raises
        ``StoreError``."""
        if not self.tenant_retention:
            return 0
        if self._tenant_cursors is None:
            self._tenant_cursors = {}
        removed = await purge_expired(
            self.redis, self.stream, self.tenant_retention, self._tenant_cursors, now_ms
        )
        self.trimmed += removed
        return removed

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(self.retention_check_s)
            try:
                removed = await self.trim_interactions() + await self.purge_tenants()
                if removed:
                    log.info("store: retention trimmed %d entries from %s", removed, self.stream)
            except StoreError as exc:
                log.warning("store: retention trim skipped: %s", exc)
