"""A lease ends at its ``expires_ms`` on the store's clock, not at the next sweep: a heartbeat,
verdict or release after that is refused (or, for a release, audited as an expiry) inside the
Lua script, and the slot goes straight back to the queue for others. Real Redis, no sweep runs."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
import redis.asyncio as aioredis

from gateway.review.config import Priority
from gateway.review.errors import LeaseExpired, LeaseLost
from gateway.review.queue import Lease, NewItem, ReviewQueues, now_ms

LEASE_MS = 1000


async def _server_ms(r: aioredis.Redis) -> int:
    sec, usec = await r.time()
    return int(sec) * 1000 + int(usec) // 1000


async def _past(r: aioredis.Redis, lease: Lease) -> None:
    """Sleep until the store's clock has reached the lease's reported end (one sleep, then a check)."""
    await asyncio.sleep(max(0, lease.expires_ms - await _server_ms(r)) / 1000 + 0.005)
    assert await _server_ms(r) >= lease.expires_ms


async def _one(queues: ReviewQueues, k: int = 1) -> str:
    ts = now_ms()
    payload = {"messages": [], "completion": "x"}
    item = NewItem("interaction", "i-1", "acme", Priority.P1, ts + 60_000, ts + 60_000, payload)
    iid, _ = await queues.enqueue("q", item, k)
    return iid


@pytest.fixture()
def short(aredis: aioredis.Redis) -> ReviewQueues:
    return ReviewQueues(aredis, lease_ms=LEASE_MS)


async def test_reported_expiry_is_the_stores_clock(aredis: aioredis.Redis, short: ReviewQueues) -> None:
    await _one(short)
    before = await _server_ms(aredis)
    (lease,) = await short.claim("q", "ana")
    after = await _server_ms(aredis)
    assert before + LEASE_MS <= lease.expires_ms <= after + LEASE_MS
    await asyncio.sleep(0.1)
    before = await _server_ms(aredis)
    renewed = await short.heartbeat(lease.id, "ana")
    assert before + LEASE_MS <= renewed <= await _server_ms(aredis) + LEASE_MS
    assert renewed >= lease.expires_ms + 100


async def test_verdict_after_expiry_is_refused_and_the_item_returns(
    aredis: aioredis.Redis, short: ReviewQueues
) -> None:
    iid = await _one(short)
    (lease,) = await short.claim("q", "ana")
    await _past(aredis, lease)
    with pytest.raises(LeaseExpired) as err:
        await short.verdict(lease.id, "ana", iid, {"label": "acceptable"})
    assert err.value.status == 409 and err.value.code == "lease_expired"
    assert "expired" in err.value.message and err.value.expired_ms == lease.expires_ms
    item = await short.get_item("q", iid)
    assert item is not None and item.status == "open" and item.verdicts == {} and item.leases == {}
    # No sweep has run: the slot is available to others at once (claim() itself never sweeps).
    (again,) = await short.claim("q", "ben")
    assert again.item_id == iid
    res = await short.verdict(again.id, "ben", iid, {"label": "policy_violation"})
    assert res.decided
    events = [e["event"] for e in reversed(await short.audit("q"))]
    assert events == ["enqueue", "claim", "lease_expired", "claim", "verdict", "decided"]
    # The expired holder's retry is now lease_lost (the slot is someone else's and gone).
    with pytest.raises(LeaseLost):
        await short.verdict(lease.id, "ana", iid, {"label": "acceptable"})


async def test_heartbeat_after_expiry_is_refused_and_the_item_returns(
    aredis: aioredis.Redis, short: ReviewQueues
) -> None:
    iid = await _one(short, k=2)
    (lease,) = await short.claim("q", "ana")
    await asyncio.sleep(LEASE_MS / 2000)
    (kept,) = await short.claim("q", "ben")
    await _past(aredis, lease)
    assert await _server_ms(aredis) < kept.expires_ms
    await short.heartbeat(kept.id, "ben")  # ben's lease is still live: renewed
    with pytest.raises(LeaseExpired):
        await short.heartbeat(lease.id, "ana")
    item = await short.get_item("q", iid)
    assert item is not None and set(item.leases.values()) == {"ben"}
    (again,) = await short.claim("q", "cy")
    assert again.item_id == iid
    assert (await short.verdict(kept.id, "ben", iid, {"label": "acceptable"})).count == 1
    assert (await short.verdict(again.id, "cy", iid, {"label": "acceptable"})).decided


async def test_heartbeats_in_time_keep_the_lease_past_its_first_end(
    aredis: aioredis.Redis, short: ReviewQueues
) -> None:
    iid = await _one(short)
    (lease,) = await short.claim("q", "ana")
    for _ in range(3):  # 1.2 s in all, a heartbeat every 0.4 s
        await asyncio.sleep(0.4)
        await short.heartbeat(lease.id, "ana")
    assert await _server_ms(aredis) > lease.expires_ms
    assert (await short.verdict(lease.id, "ana", iid, {"label": "acceptable"})).decided


async def test_release_after_expiry_returns_the_item_audited_as_expiry(
    aredis: aioredis.Redis, short: ReviewQueues
) -> None:
    iid = await _one(short)
    (lease,) = await short.claim("q", "ana")
    await _past(aredis, lease)
    await short.release(lease.id, "ana", iid)
    (again,) = await short.claim("q", "ben")
    assert again.item_id == iid
    events = Counter(e["event"] for e in await short.audit("q"))
    assert events["lease_expired"] == 1 and events["release"] == 0
    assert (await short.reclaim_expired("q")).returned == 0  # nothing left for the sweep
