"""Must-holds 1-3 of issue 4 against the real Redis: k-overlap under 50 concurrent reviewers,
expired leases of a vanished reviewer returned in full, and claims surviving a burst."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter

import pytest
import redis.asyncio as aioredis

from gateway.review.config import Priority
from gateway.review.errors import LeaseLost
from gateway.review.queue import GROUP, Keys, NewItem, ReviewQueues, now_ms


def _items(n: int, *, start: int = 0, tenant: str = "acme") -> list[NewItem]:
    ts = now_ms()
    return [
        NewItem(
            source="interaction",
            source_id=f"int-{i}",
            tenant=tenant,
            priority=(Priority.P1, Priority.P2, Priority.P3)[i % 3],
            claim_by_ms=ts + 3_600_000,
            decide_by_ms=ts + 7_200_000,
            payload={"messages": [{"role": "user", "content": f"question {i}"}], "completion": "answer"},
            detectors=("pii",),
        )
        for i in range(start, start + n)
    ]


async def _fill(queues: ReviewQueues, queue: str, n: int, k: int, start: int = 0) -> list[str]:
    ids: list[str] = []
    items = _items(n, start=start)
    for i in range(0, n, 500):
        res = await queues.enqueue_many(queue, items[i : i + 500], k)
        ids += [iid for iid, created in res if created]
    return ids


@pytest.mark.slow
async def test_k2_overlap_50_concurrent_reviewers_5000_items(aredis: aioredis.Redis) -> None:
    queues = ReviewQueues(aredis, lease_ms=600_000)
    ids = await _fill(queues, "safety", 5000, k=2)
    assert len(ids) == 5000
    given: Counter[str] = Counter()

    async def reviewer(name: str) -> None:
        rng = random.Random(name)
        idle_rounds = 0
        while True:
            leases = await queues.claim("safety", name, count=1)
            if not leases:
                st = await queues.stats("safety")
                if st.open == 0:
                    return
                idle_rounds += 1
                assert idle_rounds < 2000, "reviewer starved"
                await asyncio.sleep(0.005)
                continue
            idle_rounds = 0
            for lease in leases:
                label = rng.choice(["acceptable", "policy_violation"])
                await queues.verdict(lease.id, name, lease.item_id, {"label": label})
                given[name] += 1

    await asyncio.gather(*(reviewer(f"r{i:02d}") for i in range(50)))
    items = await queues.get_items("safety", ids)
    assert len(items) == 5000
    for it in items:
        assert it.status == "decided"
        assert len(it.verdicts) == 2, it.id
        assert len(set(it.verdicts)) == 2
    assert sum(given.values()) == 10_000
    assert len(given) > 1
    st = await queues.stats("safety")
    assert (st.open, st.claimed, st.waiting_slots, st.decided) == (0, 0, 0, 5000)
    audit_len = await aredis.xlen(Keys("safety").audit)
    # 5000 enqueues + 10000 claims + 10000 verdicts + 5000 decided
    assert audit_len == 30_000


async def test_vanished_reviewer_240_leases_return_in_full(
    aredis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    queues = ReviewQueues(aredis, lease_ms=300, sweep_page=50)
    await _fill(queues, "q", 260, k=1)
    leases = await queues.claim("q", "alice", count=240)
    assert len(leases) == 240
    # Three of alice's slot entries are deleted while she holds them.
    deleted = leases[:3]
    for lease in deleted:
        await aredis.xdel(Keys("q").stream(lease.priority), lease.entry)
    await asyncio.sleep(0.5)  # alice vanished: no heartbeat
    with caplog.at_level(logging.WARNING, logger="rollguard.review"):
        sweep = await queues.reclaim_expired("q")
    assert sweep.returned == 237
    assert sweep.deleted == 3
    assert sweep.pages > 3  # more than one XAUTOCLAIM page per stream was needed
    assert any("deleted" in r.getMessage() for r in caplog.records)
    patient = ReviewQueues(aredis, lease_ms=600_000)  # bob's 257 verdicts outlast a 300 ms lease
    got = await patient.claim("q", "bob", count=1000)
    alice_items = {lease.item_id for lease in leases[3:]}
    assert alice_items <= {lease.item_id for lease in got}
    assert len(got) == 237 + 20
    with pytest.raises(LeaseLost):
        await queues.verdict(leases[5].id, "alice", leases[5].item_id, {"label": "acceptable"})
    for lease in got:
        await patient.verdict(lease.id, "bob", lease.item_id, {"label": "acceptable"})
    events = Counter(e["event"] for e in await queues.audit("q", count=10_000))
    assert events["lease_expired"] == 237
    assert events["slot_deleted"] == 3


async def test_burst_of_10000_keeps_the_5_claimed(aredis: aioredis.Redis) -> None:
    queues = ReviewQueues(aredis, lease_ms=600_000)
    await _fill(queues, "q", 5, k=1)
    held = await queues.claim("q", "carol", count=5)
    assert len(held) == 5
    await _fill(queues, "q", 10_000, k=1, start=100)
    for stream in Keys("q").streams():
        info = await aredis.xinfo_groups(stream)
        assert info[0]["name"] == GROUP
    st = await queues.stats("q")
    assert st.open == 10_005 and st.claimed == 5
    for lease in held:
        assert await queues.heartbeat(lease.id, "carol") > 0
        res = await queues.verdict(lease.id, "carol", lease.item_id, {"label": "acceptable"})
        assert res.decided
    assert (await queues.stats("q")).open == 10_000


async def test_heartbeat_keeps_a_lease_and_k_is_enforced_per_reviewer(aredis: aioredis.Redis) -> None:
    queues = ReviewQueues(aredis, lease_ms=1000)  # heartbeats every 0.3 s: wide margin under load
    await _fill(queues, "q", 1, k=2)
    (lease,) = await queues.claim("q", "dan")
    assert await queues.claim("q", "dan") == []  # never two slots of one item for one reviewer
    for _ in range(4):  # 1.2 s in all: past the first lease end
        await asyncio.sleep(0.3)
        await queues.heartbeat(lease.id, "dan")
        assert (await queues.reclaim_expired("q")).returned == 0
    with pytest.raises(LeaseLost):
        await queues.heartbeat(lease.id, "eve")
    await queues.verdict(lease.id, "dan", lease.item_id, {"label": "acceptable"})
    assert await queues.claim("q", "dan") == []  # already judged it
    (other,) = await queues.claim("q", "eve")
    res = await queues.verdict(other.id, "eve", other.item_id, {"label": "acceptable"})
    assert res.decided and (res.count, res.k) == (2, 2)
    ttl = await aredis.ttl(Keys("q").item(lease.item_id))
    assert 0 < ttl <= queues.retention_s


async def test_scoped_stats_count_only_granted_tenants(aredis: aioredis.Redis) -> None:
    queues = ReviewQueues(aredis)
    ts = now_ms()
    items = [
        NewItem(
            "interaction",
            f"i{n}",
            tenant,
            Priority.P2,
            ts - 1000 if late else ts + 60_000,
            ts + 60_000,
            {"messages": []},
        )
        for n, (tenant, late) in enumerate([("acme", True), ("acme", False), ("globex", True)])
    ]
    await queues.enqueue_many("q", items, 1)
    acme = await queues.stats("q", tenants=["acme"])
    assert (acme.open, acme.claim_breaches, acme.decide_breaches, acme.scoped) == (2, 1, 0, True)
    both = await queues.stats("q")
    assert (both.open, both.claim_breaches, both.scoped) == (3, 2, False)
    (lease,) = await queues.claim("q", "ana", tenants=["globex"])
    await queues.verdict(lease.id, "ana", lease.item_id, {"label": "acceptable"})
    assert (await queues.stats("q", tenants=["globex"])).open == 0
    assert (await queues.stats("q", tenants=["acme", "globex"])).open == 2
