"""Per-tenant retention of the interactions stream (``tenants.<t>.retention_ms``).

One stream holds every tenant's records (the detector workers read it through one consumer group),
so a tenant's shorter retention cannot be an ``XTRIM MINID``: that cuts every tenant at one id.
Instead, each retention pass walks the stream from a cursor up to the tenant's expiry bound and
``XDEL``s the entries whose ``tenant`` field (written by ``Store.append_interaction``) has that
retention:

- the bound is ``streams.safe_min_id(stream, retention_ms)``: ``now - retention_ms``, held back to
  the oldest entry a consumer group has not acknowledged, so a record is never deleted before the
  detector workers counted it (the stream-wide trim keeps the same promise);
- one cursor per distinct retention value (in memory): entries below it were already judged, so
  each entry is read once per distinct value over its life (a restart walks from the start once);
- ``tenants.default.retention_ms`` applies to tenants not listed, with their own value first.

Cost: ``XRANGE`` of ``batch`` entries and one ``XDEL`` per batch; with ``k`` distinct retention
values the stream is read ``k`` times over its life. Redis errors are raised as ``StoreError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from gateway.store import streams
from gateway.store.errors import redis_errors
from rollguard.settings import DEFAULT_TENANT, TenantSettings


@dataclass(frozen=True, slots=True)
class TenantRetention:
    """Which tenant's records expire after how many milliseconds. ``by_tenant``: tenant -> ms;
    ``fallback_ms``: tenants not listed (``tenants.default``), None = only the stream-wide trim."""

    by_tenant: Mapping[str, int] = field(default_factory=dict)
    fallback_ms: int | None = None

    @classmethod
    def from_settings(cls, tenants: Mapping[str, TenantSettings]) -> TenantRetention:
        by = {n: t.retention_ms for n, t in tenants.items() if t.retention_ms is not None}
        return cls(by, by.get(DEFAULT_TENANT))

    def __bool__(self) -> bool:
        return bool(self.by_tenant)

    def ttl_of(self, tenant: str) -> int | None:
        """The retention of ``tenant``'s records in ms (None: the stream-wide one)."""
        return self.by_tenant.get(tenant, self.fallback_ms)

    def values(self) -> list[int]:
        """The distinct retention values in ms, shortest first."""
        return sorted(set(self.by_tenant.values()))


async def purge_expired(
    client: aioredis.Redis,
    stream: str,
    retention: TenantRetention,
    cursors: dict[int, str],
    now_ms: int | None = None,
    batch: int = 500,
) -> int:
    """Delete the records of ``stream`` older than their tenant's retention that every consumer
    group acknowledged. ``cursors`` (retention ms -> exclusive start id) is advanced in place;
    pass the same dict to every pass. Returns the number of entries deleted. Raises ``StoreError``."""
    deleted = 0
    for ttl in retention.values():
        bound = await streams.safe_min_id(client, stream, ttl, now_ms)
        start = cursors.get(ttl, "-")
        with redis_errors(f"cannot apply tenant retention to {stream!r}", detail=True):
            while True:
                entries = await client.xrange(stream, min=start, max=f"({bound}", count=batch)
                if not entries:
                    break
                doomed = [
                    eid
                    for eid, f in entries
                    if eid is not None and retention.ttl_of(streams.text((f or {}).get("tenant", ""))) == ttl
                ]
                if doomed:
                    deleted += int(await client.xdel(stream, *doomed))
                start = f"({streams.text(entries[-1][0])}"
                if len(entries) < batch:
                    break
        cursors[ttl] = start
    return deleted
