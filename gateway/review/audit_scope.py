"""A queue's audit events as a lead granted some tenants may read them.

The audit stream (``rollguard:review:{q}:audit``) records every enqueue, claim, release, expiry
and verdict with the item id but not its tenant; the tenant is the item's (one ``HGET`` per item,
in one pipeline per page). A lead granted ``["acme"]`` sees the events of acme's items only; events
without an item (``slot_deleted``) and events of items no longer stored (decided and past their
TTL: their tenant is unknown) are left out. Operators and leads granted ``"*"`` read the stream
unfiltered (``ReviewQueues.audit``).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.review.queue import Keys, ReviewQueues
from gateway.store.errors import redis_errors
from gateway.store.streams import text

MAX_SCAN = 50_000
"""Events read at most for one scoped request (newest first), so a lead with few items in a busy
queue costs a bounded number of round trips (pages of ``max(count, 100)``)."""


async def scoped_audit(
    queues: ReviewQueues, queue: str, count: int, tenants: Sequence[str] | None
) -> list[dict[str, str]]:
    """The newest ``count`` audit events of ``queue`` (newest first) whose item belongs to one of
    ``tenants``; ``None`` = all tenants. Raises ``StoreError`` when Redis fails."""
    if tenants is None:
        return await queues.audit(queue, count=count)
    with redis_errors("cannot read the review audit stream"):
        return await _scan(queues, Keys(queue), count, frozenset(tenants))


async def _scan(
    queues: ReviewQueues, keys: Keys, count: int, allowed: frozenset[str]
) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    page = max(count, 100)
    upper, scanned = "+", 0
    while len(out) < count and scanned < MAX_SCAN:
        rows = await queues.redis.xrevrange(keys.audit, max=upper, count=page)
        if not rows:
            break
        events = [
            {**{text(k): text(v) for k, v in (fields or {}).items()}, "id": text(eid)} for eid, fields in rows
        ]
        items = sorted({e["item"] for e in events if e.get("item")})
        async with queues.redis.pipeline(transaction=False) as pipe:
            for iid in items:
                pipe.hget(keys.item(iid), "tenant")
            owners = dict(zip(items, await pipe.execute(), strict=True))
        for e in events:
            owner = owners.get(e.get("item", ""))
            if owner is not None and text(owner) in allowed:
                out.append(e)
                if len(out) == count:
                    break
        scanned += len(rows)
        if len(rows) < page:
            break
        upper = "(" + events[-1]["id"]
    return out
