"""The review service's anomaly consumer on the real Redis: unique consumer names, takeover of a
bundle a dead consumer left pending (XAUTOCLAIM with min-idle), and exemplar records carried in
the bundle instead of a search of the interactions stream."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import redis.asyncio as aioredis

from gateway.review.config import parse_review_settings
from gateway.review.service import ReviewService
from gateway.store.keys import ANOMALIES_STREAM, ANOMALY_GROUP, INTERACTIONS_STREAM
from gateway.store.streams import ensure_group

from .appkit import flagged_record, review_config

PROMPT = [{"role": "user", "content": "Summarise the refund policy."}]


def _exemplar(rid: str, variant: str, reply: str) -> dict[str, Any]:
    return dict(flagged_record(rid, variant=variant, completion=reply), messages=PROMPT)


def _bundle(**extra: Any) -> dict[str, Any]:
    return {
        "id": "an-9",
        "detector": "sycophancy",
        "statistic": "z",
        "threshold": 2.5,
        "severity": "high",
        "tenant": "acme",
        "variant": "canary",
        "exemplar_ids": ["c-9", "k-9"],
        **extra,
    }


async def test_a_bundle_left_pending_by_a_dead_consumer_is_taken_over(aredis: aioredis.Redis) -> None:
    settings = parse_review_settings(review_config())
    await aredis.xadd(ANOMALIES_STREAM, {"bundle": orjson.dumps(_bundle())})
    dead = ReviewService(settings, aredis, anomaly_claim_idle_ms=1500)
    alive = ReviewService(settings, aredis, anomaly_claim_idle_ms=1500)
    assert dead.anomalies.consumer != alive.anomalies.consumer  # never the shared "review-1"
    # The first process read the bundle and died before handling and acknowledging it.
    await ensure_group(aredis, ANOMALIES_STREAM, ANOMALY_GROUP)
    read: Any = await aredis.xreadgroup(
        ANOMALY_GROUP, dead.anomalies.consumer, {ANOMALIES_STREAM: ">"}, count=10
    )
    assert len(read[0][1]) == 1
    # The restarted (or other) process does not steal it while it may still be worked on ...
    assert await alive.consume_anomalies(block_ms=10) == 0
    assert (await aredis.xpending(ANOMALIES_STREAM, ANOMALY_GROUP))["pending"] == 1
    # ... and takes it over once it has been idle for the claim time.
    await asyncio.sleep(1.6)
    assert await alive.consume_anomalies(block_ms=10) == 1
    assert (await aredis.xpending(ANOMALIES_STREAM, ANOMALY_GROUP))["pending"] == 0
    (item,) = await alive.queues.open_items("rollout")
    assert item.source_id == "an-9"


async def test_exemplar_records_in_the_bundle_are_used_without_a_scan(aredis: aioredis.Redis) -> None:
    svc = ReviewService(parse_review_settings(review_config()), aredis)
    records = [
        _exemplar("c-9", "canary", "Sure! Refunds are always possible."),
        _exemplar("k-9", "control", "Refunds within 30 days with a receipt."),
    ]
    # Not in the interactions stream at all: only the bundle has them.
    assert await aredis.xlen(INTERACTIONS_STREAM) == 0
    await aredis.xadd(ANOMALIES_STREAM, {"bundle": orjson.dumps(_bundle(exemplar_records=records))})
    assert await svc.consume_anomalies(block_ms=10) == 1
    (item,) = await svc.queues.open_items("rollout")
    assert [x["interaction_id"] for x in item.payload["exemplars"]] == ["c-9", "k-9"]
    cmp = item.payload["comparison"]
    assert cmp["canary"]["completion"].startswith("Sure!") and cmp["control"]["variant"] == "control"


async def test_a_bundle_with_exemplar_records_never_searches_the_stream(aredis: aioredis.Redis) -> None:
    svc = ReviewService(parse_review_settings(review_config()), aredis)
    # The ids are in the stream, but the worker carried none of them (another worker scored
    # them): the review service does not go looking.
    for rec in (_exemplar("c-9", "canary", "Sure!"), _exemplar("k-9", "control", "No.")):
        await aredis.xadd(INTERACTIONS_STREAM, {"record": orjson.dumps(rec)})
    await aredis.xadd(ANOMALIES_STREAM, {"bundle": orjson.dumps(_bundle(exemplar_records=[]))})
    assert await svc.consume_anomalies(block_ms=10) == 1
    (item,) = await svc.queues.open_items("rollout")
    assert item.payload["exemplars"] == [] and item.payload["comparison"] is None


async def test_an_old_bundle_without_records_falls_back_to_the_stream(aredis: aioredis.Redis) -> None:
    svc = ReviewService(parse_review_settings(review_config()), aredis)
    for rec in (_exemplar("c-9", "canary", "Sure!"), _exemplar("k-9", "control", "No.")):
        await aredis.xadd(INTERACTIONS_STREAM, {"record": orjson.dumps(rec)})
    await aredis.xadd(ANOMALIES_STREAM, {"bundle": orjson.dumps(_bundle())})
    assert await svc.consume_anomalies(block_ms=10) == 1
    (item,) = await svc.queues.open_items("rollout")
    assert sorted(x["interaction_id"] for x in item.payload["exemplars"]) == ["c-9", "k-9"]
