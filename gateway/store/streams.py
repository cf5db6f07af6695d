"""Stream helpers every Redis caller shares: stream ids, creating a consumer group, and the
retention bound that never drops an unacknowledged entry. Redis errors are raised as
``StoreError`` subclasses (``gateway.store.errors``)."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gateway.store.errors import redis_errors


def parse_id(entry_id: str | bytes) -> tuple[int, int]:
    """A stream id ``"<ms>-<seq>"`` as a comparable pair (``"<ms>"`` alone means seq 0)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def fmt_id(pair: tuple[int, int]) -> str:
    """The stream id of a ``parse_id`` pair."""
    return f"{pair[0]}-{pair[1]}"


def text(value: Any) -> str:
    """A Redis reply value as ``str`` (bytes decoded as UTF-8)."""
    return value.decode() if isinstance(value, bytes) else str(value)


async def ensure_group(client: aioredis.Redis, stream: str, group: str, start_id: str = "0") -> None:
    """Create consumer group ``group`` on ``stream`` (and the stream) if missing; an existing
    group (BUSYGROUP) is fine. ``start_id`` ``"0"`` delivers every entry already in the stream;
    ``"$"`` only new ones. Raises ``StoreError``."""
    with redis_errors(f"cannot create group {group!r} on {stream!r}", detail=True):
        try:
            await client.xgroup_create(stream, group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


async def safe_min_id(
    client: aioredis.Redis, stream: str, retention_ms: int, now_ms: int | None = None
) -> str:
    """The smallest id XTRIM MINID may keep: ``min(now - retention_ms, oldest unacknowledged)``,
    where for each consumer group (XINFO GROUPS) the oldest unacknowledged entry is the smallest
    pending id (XPENDING summary) and the first entry after ``last-delivered-id`` (entries never
    delivered are unacknowledged too). Raises ``StoreError``."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    keep = (max(0, now - retention_ms), 0)
    with redis_errors(f"cannot compute the retention bound of {stream!r}", detail=True):
        try:
            groups = await client.xinfo_groups(stream)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return fmt_id(keep)
            raise
        for g in groups:
            name = text(g["name"])
            if int(g.get("pending") or 0) > 0:
                summary = await client.xpending(stream, name)
                if summary.get("min"):
                    keep = min(keep, parse_id(summary["min"]))
            last = text(g.get("last-delivered-id") or "0-0")
            nxt = await client.xrange(stream, min=f"({last}", max="+", count=1)
            if nxt:
                keep = min(keep, parse_id(text(nxt[0][0])))
    return fmt_id(keep)


async def trim_stream(
    client: aioredis.Redis, stream: str, retention_ms: int, now_ms: int | None = None
) -> int:
    """Drop entries older than ``retention_ms`` that every consumer group has acknowledged (exact
    XTRIM MINID at ``safe_min_id``). Returns the number of entries removed. Raises
    ``StoreError``."""
    if retention_ms <= 0:
        return 0
    min_id = await safe_min_id(client, stream, retention_ms, now_ms)
    with redis_errors(f"cannot trim {stream!r}", detail=True):
        return int(await client.xtrim(stream, minid=min_id, approximate=False))


async def forget_idle_consumers(client: aioredis.Redis, stream: str, group: str, idle_ms: int) -> list[str]:
    """Delete the consumers of ``group`` that hold no pending entry and have not read for
    ``idle_ms`` (XINFO CONSUMERS ``idle``; a live consumer reads every second or so). With consumer
    names unique per process, every restart leaves one such name behind. Returns the names
    deleted. Raises ``StoreError``."""
    gone: list[str] = []
    with redis_errors(f"cannot list the consumers of {group!r} on {stream!r}"):
        for c in await client.xinfo_consumers(stream, group):
            if int(c.get("pending") or 0) == 0 and int(c.get("idle") or 0) >= idle_ms:
                name = text(c["name"])
                await client.xgroup_delconsumer(stream, group, name)
                gone.append(name)
    return gone
