"""A lease is for one item: a verdict or release that names another item (of the same queue, or of
another tenant) is refused inside the Lua script and changes nothing; the leased item is never lost
(its slot stays leased, and claimable again after release). Unknown items are 404, items of a
tenant the reviewer is not granted 403. Real Redis (the ``redis_url`` fixture), no mocks."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from gateway.review.config import Priority
from gateway.review.errors import LeaseExpired, LeaseMismatch
from gateway.review.queue import NewItem, ReviewQueues, now_ms
from rollguard.errors import NotFound, PermissionDenied


async def _item(queues: ReviewQueues, source_id: str, tenant: str, k: int = 1) -> str:
    ts = now_ms()
    payload = {"messages": [{"role": "user", "content": "hi"}], "completion": "hello"}
    item = NewItem("interaction", source_id, tenant, Priority.P1, ts + 60_000, ts + 60_000, payload)
    iid, created = await queues.enqueue("safety", item, k)
    assert created
    return iid


async def _untouched(queues: ReviewQueues, iid: str) -> None:
    it = await queues.get_item("safety", iid)
    assert it is not None and it.status == "open" and it.verdicts == {}


async def test_verdict_for_another_tenants_item_is_refused_and_nothing_is_lost(
    queues: ReviewQueues,
) -> None:
    acme = await _item(queues, "a1", "acme")
    beta = await _item(queues, "b1", "beta")
    (lease,) = await queues.claim("safety", "ana", tenants=["acme"])
    assert lease.item_id == acme
    with pytest.raises(PermissionDenied):
        await queues.verdict(lease.id, "ana", beta, {"label": "acceptable"}, tenants=["acme"])
    # Even a reviewer granted every tenant cannot use an acme lease on the beta item.
    with pytest.raises(LeaseMismatch) as exc:
        await queues.verdict(lease.id, "ana", beta, {"label": "acceptable"}, tenants=["*"])
    assert exc.value.status == 409 and exc.value.param == "item_id"
    await _untouched(queues, beta)
    await _untouched(queues, acme)
    st = await queues.stats("safety")
    assert (st.open, st.claimed, st.waiting_slots) == (2, 1, 1)
    # The lease is still ana's and still decides the item it was for.
    res = await queues.verdict(lease.id, "ana", acme, {"label": "acceptable"}, tenants=["acme"])
    assert res.decided
    st = await queues.stats("safety")
    assert (st.open, st.claimed, st.waiting_slots, st.decided) == (1, 0, 1, 1)
    (other,) = await queues.claim("safety", "bob", tenants=["beta"])
    assert other.item_id == beta


async def test_verdict_for_another_item_of_the_same_tenant_is_refused(queues: ReviewQueues) -> None:
    first = await _item(queues, "a1", "acme")
    second = await _item(queues, "a2", "acme")
    (lease,) = await queues.claim("safety", "ana", tenants=["acme"])
    assert lease.item_id == first
    with pytest.raises(LeaseMismatch):
        await queues.verdict(lease.id, "ana", second, {"label": "acceptable"}, tenants=["acme"])
    await _untouched(queues, second)
    it = await queues.get_item("safety", first)
    assert it is not None and it.leases == {lease.entry: "ana"}
    events = [e["event"] for e in await queues.audit("safety")]
    assert "verdict" not in events and "decided" not in events
    # The second item is still claimable by ana, the first one still leased to her.
    (nxt,) = await queues.claim("safety", "ana", tenants=["acme"])
    assert nxt.item_id == second


async def test_release_with_another_items_id_is_refused(queues: ReviewQueues) -> None:
    first = await _item(queues, "a1", "acme")
    second = await _item(queues, "a2", "acme")
    (lease,) = await queues.claim("safety", "ana", tenants=["acme"])
    with pytest.raises(LeaseMismatch):
        await queues.release(lease.id, "ana", second)
    it = await queues.get_item("safety", first)
    assert it is not None and it.leases == {lease.entry: "ana"}
    assert not [e for e in await queues.audit("safety") if e["event"] == "release"]
    await queues.release(lease.id, "ana", first)
    it = await queues.get_item("safety", first)
    assert it is not None and it.leases == {}
    (again,) = await queues.claim("safety", "bob", tenants=["acme"])
    assert again.item_id == first


async def test_verdict_on_an_unknown_item_is_not_found(queues: ReviewQueues) -> None:
    iid = await _item(queues, "a1", "acme")
    (lease,) = await queues.claim("safety", "ana", tenants=["acme"])
    with pytest.raises(NotFound) as exc:
        await queues.verdict(lease.id, "ana", "0" * 24, {"label": "acceptable"}, tenants=["acme"])
    assert exc.value.param == "item_id" and exc.value.code == "not_found"
    res = await queues.verdict(lease.id, "ana", iid, {"label": "acceptable"}, tenants=["acme"])
    assert res.decided


async def test_grants_are_checked_when_the_verdict_arrives(queues: ReviewQueues) -> None:
    """A reviewer whose grants no longer cover the item's tenant (config changed after the claim)
    cannot decide it with the old lease."""
    iid = await _item(queues, "a1", "acme")
    (lease,) = await queues.claim("safety", "ana", tenants=["acme"])
    with pytest.raises(PermissionDenied):
        await queues.verdict(lease.id, "ana", iid, {"label": "acceptable"}, tenants=["beta"])
    await _untouched(queues, iid)


async def test_mismatch_on_an_expired_lease_reports_the_expiry(aredis: aioredis.Redis) -> None:
    short = ReviewQueues(aredis, lease_ms=200)
    await _item(short, "a1", "acme")
    second = await _item(short, "a2", "acme")
    (lease,) = await short.claim("safety", "ana", tenants=["acme"])
    await asyncio.sleep(0.3)
    with pytest.raises(LeaseExpired):
        await short.verdict(lease.id, "ana", second, {"label": "acceptable"}, tenants=["acme"])
    await _untouched(short, second)
    taken = await short.claim("safety", "bob", tenants=["acme"], count=2)
    assert {t.item_id for t in taken} == {lease.item_id, second}
