"""The detector worker on Redis Cluster (docs/operations.md, "Scripts and transactions on Cluster"):
its batch transaction must touch one hash slot. Real parts: a one-node Valkey Cluster (which
refuses a cross-slot transaction with ``CROSSSLOT`` as any Cluster does) and the real worker; plus
the one-off rename of the untagged keys of earlier versions on the real store."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from detectors.engine import EngineConfig
from gateway.store.keys import (
    ANOMALIES_STREAM,
    ANOMALY_GROUP,
    LEGACY_DETECTOR_KEYS,
    SEEN_KEY,
    SIGNALS_STREAM,
    STATE_KEY,
    VARIANT_SUMS_KEY,
)
from gateway.worker.consumer import DetectorWorker, WorkerOptions
from gateway.worker.migrate import migrate_detector_keys
from tests.gateway.test_worker import GROUP, STREAM, _append, _records

pytestmark = pytest.mark.integration


async def test_a_batch_is_one_slot_on_a_cluster(cluster_redis_url: str) -> None:
    """Defect: the WATCH/MULTI spanned six slots; on a Cluster every EXEC was refused with
    CROSSSLOT and no interaction was ever counted."""
    r: Any = redis.Redis.from_url(cluster_redis_url)
    r.flushall()
    _append(r, _records(30))
    client = aioredis.Redis.from_url(cluster_redis_url)
    options = WorkerOptions(batch=10, block_ms=50, claim_idle_ms=60_000, idle_exit_s=0.5)
    worker = DetectorWorker(client, STREAM, "w-cluster", EngineConfig(), options)
    try:
        stats = await worker.run()
    finally:
        await client.aclose()
    assert (stats.processed, stats.batches) == (30, 3)
    assert r.xpending(STREAM, GROUP)["pending"] == 0  # acknowledged after each EXEC
    assert r.zcard(SEEN_KEY) == 30 and r.xlen(SIGNALS_STREAM) == 30
    assert orjson.loads(r.get(STATE_KEY))["n"] == 30
    assert sum(orjson.loads(r.get(VARIANT_SUMS_KEY))["control"]["latency_ms"].values()) == 30
    slots = {r.cluster("KEYSLOT", k) for k in (STATE_KEY, SEEN_KEY, VARIANT_SUMS_KEY, SIGNALS_STREAM)}
    assert len(slots) == 1
    r.close()


async def test_untagged_keys_of_earlier_versions_move_once(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    r: Any = redis.Redis.from_url(redis_url)
    old = {new: old for old, new in LEGACY_DETECTOR_KEYS.items()}
    r.set(old[STATE_KEY], b'{"n": 7}')
    r.zadd(old[SEEN_KEY], {"ix-1": 1})
    r.xadd(old[ANOMALIES_STREAM], {"bundle": b"{}"})
    r.xgroup_create(old[ANOMALIES_STREAM], ANOMALY_GROUP, id="0")
    r.xreadgroup(ANOMALY_GROUP, "router-1", {old[ANOMALIES_STREAM]: ">"})  # one pending delivery
    r.xadd(old[SIGNALS_STREAM], {"id": "ix-1"})
    r.xadd(SIGNALS_STREAM, {"id": "ix-new"})  # a new gateway already wrote the new name
    client = aioredis.Redis.from_url(redis_url)
    try:
        with caplog.at_level(logging.WARNING, logger="rollguard.worker"):
            moved = await migrate_detector_keys(client)
        again = await migrate_detector_keys(client)
    finally:
        await client.aclose()
    assert sorted(moved) == sorted([old[STATE_KEY], old[SEEN_KEY], old[ANOMALIES_STREAM]])
    assert again == []
    assert r.get(STATE_KEY) == b'{"n": 7}' and r.zscore(SEEN_KEY, "ix-1") == 1
    assert r.xpending(ANOMALIES_STREAM, ANOMALY_GROUP)["pending"] == 1  # group and pending list moved
    assert not r.exists(old[STATE_KEY], old[SEEN_KEY], old[ANOMALIES_STREAM])
    assert r.xlen(old[SIGNALS_STREAM]) == 1 and r.xlen(SIGNALS_STREAM) == 1  # both exist: left alone
    assert any(old[SIGNALS_STREAM] in m for m in caplog.messages)
    r.close()
