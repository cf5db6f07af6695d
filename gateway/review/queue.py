"""Review queues on Redis Streams: enqueue with dedup, claim = lease, heartbeat, release, verdict
with k-overlap from distinct reviewers, expired-lease sweep, counts and SLA state.

Every state change is one Lua script (``gateway/review/scripts.py``), so 50 reviewers claiming at
once cannot give an item a third verdict or two verdicts from one reviewer. Keys and the slot
model are described in that module's docstring.

Errors: every redis failure is raised as a ``rollguard.errors.StoreError`` (``gateway.store.errors``);
a verdict or heartbeat on a lease the caller no longer holds raises ``LeaseLost`` (409), and on a
lease of theirs that ran past its end ``LeaseExpired`` (409, the slot goes back to the queue at
once). Lease ends are decided and reported on the Redis server's clock (see ``scripts``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from gateway.review.config import Priority
from gateway.review.errors import LeaseExpired, LeaseLost, LeaseMismatch
from gateway.review.items import (
    Lease,
    NewItem,
    QueueStats,
    ReviewItem,
    SweepResult,
    VerdictResult,
    item_id_for,
    now_ms,
)
from gateway.review.scripts import CLAIM, ENQUEUE, HEARTBEAT, PARKED, RELEASE, SWEEP, VERDICT
from gateway.store.errors import redis_boundary
from gateway.store.keys import REVIEW_PREFIX as PREFIX
from gateway.store.keys import REVIEWERS_GROUP as GROUP
from gateway.store.keys import ReviewQueueKeys as Keys
from gateway.store.streams import ensure_group, text
from rollguard.errors import InvalidRequest, NotFound, PermissionDenied

__all__ = [
    "GROUP",
    "PREFIX",
    "PRIORITIES",
    "Keys",
    "Lease",
    "NewItem",
    "QueueStats",
    "ReviewItem",
    "ReviewQueues",
    "SweepResult",
    "VerdictResult",
    "item_id_for",
    "now_ms",
]

log = logging.getLogger("rollguard.review")

PRIORITIES = (Priority.P1, Priority.P2, Priority.P3)

_store_errors = redis_boundary("review store failed")
"""Every public coroutine below: redis exceptions -> ``StoreError`` (``gateway.store.errors``)."""


class ReviewQueues:
    """The queue store. One instance per process; cheap to call concurrently.

    ``lease_ms`` is the lease length in milliseconds; ``retention_s`` the TTL of decided items in
    seconds; ``scan_limit`` bounds how many slots one claim may look at per priority.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        lease_ms: int = 300_000,
        retention_s: int = 7 * 24 * 3600,
        scan_limit: int = 200,
        sweep_page: int = 100,
    ) -> None:
        self.redis = redis
        self.lease_ms = lease_ms
        self.retention_s = retention_s
        self.scan_limit = scan_limit
        self.sweep_page = sweep_page
        self._enqueue = redis.register_script(ENQUEUE)
        self._claim = redis.register_script(CLAIM)
        self._heartbeat = redis.register_script(HEARTBEAT)
        self._release = redis.register_script(RELEASE)
        self._verdict = redis.register_script(VERDICT)
        self._sweep = redis.register_script(SWEEP)
        self._ready: set[str] = set()

    @_store_errors
    async def ensure(self, queue: str) -> None:
        """Create the priority streams and their consumer group (idempotent)."""
        if queue in self._ready:
            return
        for stream in Keys(queue).streams():
            await ensure_group(self.redis, stream, GROUP)
        self._ready.add(queue)

    @_store_errors
    async def enqueue(self, queue: str, item: NewItem, k: int) -> tuple[str, bool]:
        """Queue ``item`` needing ``k`` verdicts. Returns ``(item_id, created)``; ``created`` is
        False when the same source was already queued here (dedup per (source, queue))."""
        res = await self.enqueue_many(queue, [item], k)
        return res[0]

    @_store_errors
    async def enqueue_many(self, queue: str, items: Sequence[NewItem], k: int) -> list[tuple[str, bool]]:
        """``enqueue`` for many items in one pipeline round trip."""
        await self.ensure(queue)
        keys = Keys(queue)
        ts = now_ms()
        ids: list[str] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for it in items:
                iid = item_id_for(queue, it.source_key)
                ids.append(iid)
                fields = {
                    "queue": queue,
                    "priority": it.priority.value,
                    "tenant": it.tenant,
                    "source": it.source,
                    "source_id": it.source_id,
                    "payload": orjson.dumps(it.payload).decode(),
                    "detectors": ",".join(it.detectors),
                    "variant": it.variant or "",
                    "model": it.model or "",
                }
                args: list[Any] = [iid, ts, k, it.claim_by_ms, it.decide_by_ms]
                for name, value in fields.items():
                    args += [name, value]
                ks = [keys.item(iid), keys.open, keys.claim_by, keys.decide_by, keys.audit]
                ks += [keys.stream(it.priority), keys.tenant_open(it.tenant)]
                await self._enqueue(keys=ks, args=args, client=pipe)
            created = await pipe.execute()
        return [(iid, bool(c)) for iid, c in zip(ids, created, strict=True)]

    @_store_errors
    async def claim(
        self,
        queue: str,
        reviewer: str,
        *,
        tenants: Iterable[str] = ("*",),
        count: int = 1,
        only: Collection[str] | None = None,
    ) -> list[Lease]:
        """Lease up to ``count`` slots for ``reviewer`` (P1 first, parked slots before new ones),
        never two slots of one item and never an item the reviewer already judged or whose
        tenant is not in ``tenants`` (``"*"`` = any); with ``only``, only slots of those item ids
        (a slot of another item read meanwhile is parked for the next claimer, as a skipped one
        always is). Empty when nothing is available to them."""
        if only is not None and not only:
            return []
        await self.ensure(queue)
        keys = Keys(queue)
        ts = now_ms()
        scope = list(tenants) or ["\x00none"]
        args: list[Any] = [GROUP, reviewer, ts, count, self.scan_limit, keys.item_prefix, PARKED, len(scope)]
        args += [*scope, *(only or ())]
        raw = await self._claim(keys=[*keys.streams(), keys.audit, keys.claim_by], args=args)
        taken, gone, server_ms = raw
        if gone:
            log.warning("review claim: %d slot(s) in queue %s pointed at deleted items", gone, queue)
        return [
            Lease(queue, PRIORITIES[int(p) - 1], text(entry), text(iid), int(server_ms) + self.lease_ms)
            for p, entry, iid in taken
        ]

    @_store_errors
    async def heartbeat(self, lease_id: str, reviewer: str) -> int:
        """Extend a live lease; returns its new end (UTC epoch ms, server clock).

        Raises ``LeaseExpired`` when the lease had already run out (refused atomically; the slot is
        returned to the queue), ``LeaseLost`` when the caller does not hold it."""
        queue, prio, entry = Lease.parse(lease_id)
        keys = Keys(queue)
        code, expires = await self._heartbeat(
            keys=[keys.stream(prio), keys.audit],
            args=[GROUP, reviewer, entry, self.lease_ms, PARKED, keys.item_prefix, now_ms()],
        )
        _raise_for_lease(int(code), int(expires))
        return int(expires)

    @_store_errors
    async def release(self, lease_id: str, reviewer: str, item_id: str) -> None:
        """Give the slot back to the queue (audited ``release``; a lease that had already run out
        is back in the queue all the same and audited ``lease_expired``). Raises ``LeaseLost``
        when the caller does not hold it, ``LeaseMismatch`` when the lease is for another item
        than ``item_id`` (nothing changes; checked in the script)."""
        queue, prio, entry = Lease.parse(lease_id)
        keys = Keys(queue)
        ok = await self._release(
            keys=[keys.stream(prio), keys.leases(item_id), keys.audit],
            args=[GROUP, reviewer, entry, PARKED, item_id, now_ms(), self.lease_ms, keys.item_prefix],
        )
        if int(ok) == -5:
            raise LeaseMismatch(lease_id)
        if not ok:
            raise LeaseLost("the lease expired or belongs to someone else")

    @_store_errors
    async def verdict(
        self,
        lease_id: str,
        reviewer: str,
        item_id: str,
        verdict: dict[str, Any],
        *,
        tenants: Iterable[str] = ("*",),
    ) -> VerdictResult:
        """Record ``reviewer``'s verdict (``{"label", "note", "preference", "corrected", ...}``)
        for the leased slot, atomically: the item must exist and belong to one of ``tenants``
        (``"*"`` = any), the lease must still be theirs and be *for this item*, the item open, and
        the reviewer not already counted. The k-th verdict decides the item (TTL set, audited).

        Raises ``rollguard.errors.NotFound`` (no such item in the lease's queue),
        ``rollguard.errors.PermissionDenied`` (its tenant not in ``tenants``), ``LeaseExpired`` (the
        lease ran out before the verdict arrived, checked in the same script; the slot goes back to
        the queue), ``LeaseLost`` (not the caller's lease), ``LeaseMismatch`` (the lease is for
        another item), ``rollguard.errors.InvalidRequest`` (item decided or already judged by this
        reviewer). Every refusal but ``LeaseExpired`` leaves the store unchanged."""
        queue, prio, entry = Lease.parse(lease_id)
        keys = Keys(queue)
        ts = now_ms()
        body = dict(verdict, reviewer=reviewer, ms=ts)
        code, n, k = await self._verdict(
            keys=[
                keys.stream(prio),
                keys.item(item_id),
                keys.verdicts(item_id),
                keys.leases(item_id),
                keys.open,
                keys.claim_by,
                keys.decide_by,
                keys.decided,
                keys.audit,
            ],
            args=[
                GROUP,
                reviewer,
                entry,
                item_id,
                orjson.dumps(body).decode(),
                ts,
                self.retention_s,
                str(verdict.get("label", "")),
                keys.tenant_open_prefix,
                self.lease_ms,
                PARKED,
                keys.item_prefix,
                *(list(tenants) or ["\x00none"]),
            ],
        )
        _raise_for_verdict(int(code), int(n), queue, lease_id)
        return VerdictResult(item_id, int(n), int(k))

    @_store_errors
    async def reclaim_expired(self, queue: str) -> SweepResult:
        """Return every lease idle longer than ``lease_ms`` to the queue: ``XAUTOCLAIM`` pages
        until the cursor comes back to ``0-0`` on each priority stream. Slots deleted meanwhile
        are counted, audited and logged."""
        await self.ensure(queue)
        keys = Keys(queue)
        result = SweepResult()
        for stream in keys.streams():
            cursor = "0-0"
            while True:
                nxt, returned, deleted, _scanned = await self._sweep(
                    keys=[stream, keys.audit],
                    args=[GROUP, self.lease_ms, cursor, self.sweep_page, keys.item_prefix, PARKED, now_ms()],
                )
                result.pages += 1
                result.returned += int(returned)
                result.deleted += int(deleted)
                cursor = text(nxt)
                if cursor == "0-0":
                    break
        if result.deleted:
            log.warning(
                "review sweep: %d slot(s) of queue %s were deleted while leased", result.deleted, queue
            )
        if result.returned:
            log.info("review sweep: %d expired lease(s) of queue %s returned", result.returned, queue)
        return result

    @_store_errors
    async def stats(
        self, queue: str, at_ms: int | None = None, tenants: Sequence[str] | None = None
    ) -> QueueStats:
        """Counts and SLA state: open items, claimed slots, waiting slots, breaches of claim-by
        (never claimed in time) and decide-by, and the age of the oldest open item.

        With ``tenants`` (not ``"*"``) only those tenants' items are counted (``scoped``): open
        items, breaches and oldest age; slot-level counts (claimed, waiting, per priority) are
        queue-wide and left out."""
        if tenants is not None and "*" not in tenants:
            return await self._scoped_stats(queue, list(tenants), at_ms)
        await self.ensure(queue)
        keys = Keys(queue)
        ts = at_ms if at_ms is not None else now_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.open)
            pipe.zrange(keys.open, 0, 0, withscores=True)
            pipe.zcount(keys.claim_by, "-inf", ts)
            pipe.zcount(keys.decide_by, "-inf", ts)
            pipe.zcard(keys.decided)
            for stream in keys.streams():
                pipe.xlen(stream)
                pipe.xpending(stream, GROUP)
            res = await pipe.execute()
        st = QueueStats(
            queue=queue, open=int(res[0]), claim_breaches=int(res[2]), decide_breaches=int(res[3])
        )
        st.decided = int(res[4])
        if res[1]:
            st.oldest_age_ms = max(0, ts - int(res[1][0][1]))
        for i, prio in enumerate(PRIORITIES):
            length = int(res[5 + 2 * i])
            pending = res[6 + 2 * i]
            claimed = sum(
                int(c["pending"]) for c in pending.get("consumers", []) if text(c["name"]) != PARKED
            )
            st.claimed += claimed
            st.waiting_slots += length - claimed
            st.by_priority[prio.value] = length
        return st

    async def _scoped_stats(self, queue: str, tenants: list[str], at_ms: int | None) -> QueueStats:
        keys = Keys(queue)
        ts = at_ms if at_ms is not None else now_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            for t in tenants:
                pipe.zcard(keys.tenant_open(t))
                pipe.zrange(keys.tenant_open(t), 0, 0, withscores=True)
            res = await pipe.execute()
        st = QueueStats(queue=queue, scoped=True)
        oldest: list[float] = []
        for i in range(len(tenants)):
            st.open += int(res[2 * i])
            if res[2 * i + 1]:
                oldest.append(float(res[2 * i + 1][0][1]))
        if oldest:
            st.oldest_age_ms = max(0, ts - int(min(oldest)))
        late_claim = {text(x) for x in await self.redis.zrangebyscore(keys.claim_by, "-inf", ts)}
        late_decide = {text(x) for x in await self.redis.zrangebyscore(keys.decide_by, "-inf", ts)}
        late = sorted(late_claim | late_decide)
        if late:
            async with self.redis.pipeline(transaction=False) as pipe:
                for iid in late:
                    pipe.hget(keys.item(iid), "tenant")
                owners = await pipe.execute()
            allowed = set(tenants)
            for iid, tenant in zip(late, owners, strict=True):
                if tenant is not None and text(tenant) in allowed:
                    st.claim_breaches += int(iid in late_claim)
                    st.decide_breaches += int(iid in late_decide)
        return st

    @_store_errors
    async def get_item(self, queue: str, item_id: str) -> ReviewItem | None:
        """The item with its verdicts and live leases, or None (unknown or expired)."""
        items = await self.get_items(queue, [item_id])
        return items[0] if items else None

    @_store_errors
    async def get_items(self, queue: str, item_ids: Sequence[str]) -> list[ReviewItem]:
        """Several items in one round trip; missing ones are left out."""
        keys = Keys(queue)
        async with self.redis.pipeline(transaction=False) as pipe:
            for iid in item_ids:
                pipe.hgetall(keys.item(iid))
                pipe.hgetall(keys.verdicts(iid))
                pipe.hgetall(keys.leases(iid))
            res = await pipe.execute()
        out: list[ReviewItem] = []
        for i in range(0, len(res), 3):
            h, v, le = (_decode(x) for x in res[i : i + 3])
            if h.get("id"):
                out.append(ReviewItem.from_hash(queue, h, v, le))
        return out

    @_store_errors
    async def item_tenant(self, queue: str, item_id: str) -> str | None:
        """The tenant of an item, or None when there is no such item (one ``HGET``)."""
        tenant = await self.redis.hget(Keys(queue).item(item_id), "tenant")
        return None if tenant is None else text(tenant)

    @_store_errors
    async def open_items(self, queue: str, limit: int = 100) -> list[ReviewItem]:
        """Open items, oldest first."""
        ids = [text(x) for x in await self.redis.zrange(Keys(queue).open, 0, limit - 1)]
        return await self.get_items(queue, ids)

    @_store_errors
    async def decided_items(self, queue: str, since_ms: int = 0, limit: int = 100_000) -> list[ReviewItem]:
        """Items decided at or after ``since_ms`` (those past their TTL are skipped and their
        index entries dropped)."""
        keys = Keys(queue)
        ids = [text(x) for x in await self.redis.zrangebyscore(keys.decided, since_ms, "+inf", 0, limit)]
        items = await self.get_items(queue, ids)
        if len(items) < len(ids):
            alive = {it.id for it in items}
            dead = [i for i in ids if i not in alive]
            await self.redis.zrem(keys.decided, *dead)
        return items

    @_store_errors
    async def set_final_label(self, queue: str, item_id: str, label: str) -> None:
        """Record an adjudicated (or aggregated) label on a decided item."""
        key = Keys(queue).item(item_id)
        if await self.redis.exists(key):
            await self.redis.hset(key, "final_label", label)

    @_store_errors
    async def audit(self, queue: str, count: int = 100) -> list[dict[str, str]]:
        """The newest ``count`` audit events (newest first)."""
        rows = await self.redis.xrevrange(Keys(queue).audit, count=count)
        return [dict(_decode(fields), id=text(eid)) for eid, fields in rows or []]

    @_store_errors
    async def breached_items(self, queue: str, at_ms: int | None = None) -> list[str]:
        """Ids of open items past their claim-by or decide-by time."""
        keys = Keys(queue)
        ts = at_ms if at_ms is not None else now_ms()
        a = await self.redis.zrangebyscore(keys.claim_by, "-inf", ts)
        b = await self.redis.zrangebyscore(keys.decide_by, "-inf", ts)
        return sorted({text(x) for x in [*a, *b]})

    @_store_errors
    async def mark_paged(self, queue: str, item_id: str) -> bool:
        """True the first time ``item_id`` is paged for an SLA breach (then never again)."""
        return bool(await self.redis.sadd(Keys(queue).paged, item_id))


def _raise_for_verdict(code: int, n: int, queue: str, lease_id: str) -> None:
    """Map the verdict script's refusal codes (see ``ReviewQueues.verdict``); 0 passes."""
    if code == -6:
        raise NotFound(
            f"no review item with this item_id in queue {queue!r} (unknown id, or decided and past "
            "retention)",
            param="item_id",
        )
    if code == -7:
        raise PermissionDenied("no grant for this item's tenant")
    _raise_for_lease(code, n)
    if code == -5:
        raise LeaseMismatch(lease_id)
    if code == -2:
        raise InvalidRequest("the item is no longer open", code="item_closed")
    if code == -3:
        raise InvalidRequest("this reviewer already gave a verdict on the item", code="duplicate_verdict")


def _raise_for_lease(code: int, expired_ms: int) -> None:
    """Map a script's lease code: -1 ``LeaseLost``, -4 ``LeaseExpired`` (``expired_ms`` = when it
    ended, server clock); anything else passes."""
    if code == -1:
        raise LeaseLost("the lease is not yours: it was released, expired and re-claimed, or never held")
    if code == -4:
        raise LeaseExpired(expired_ms)


def _decode(h: Any) -> dict[str, str]:
    return {text(k): text(v) for k, v in (h or {}).items()}
