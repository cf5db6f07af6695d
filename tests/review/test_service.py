"""The review loop on the real Redis: dedup, anomaly consumer with exemplar lookup, SLA paging
(webhook on a real local HTTP server + escalation queue), Dawid-Skene -> lead adjudication,
reviewer-confirmed precision, agreement."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from gateway.review.config import ReviewerSpec, parse_review_settings
from gateway.review.service import ReviewService

from .appkit import flagged_record, review_config


def _spec(svc: ReviewService, name: str) -> ReviewerSpec:
    spec = svc.settings.reviewer(name)
    assert spec is not None
    return spec


async def test_dedup_per_source_and_queue(aredis: aioredis.Redis) -> None:
    svc = ReviewService(parse_review_settings(review_config()), aredis)
    first = await svc.escalate_interaction(flagged_record("i1"))
    again = await svc.escalate_interaction(flagged_record("i1"))
    assert [e.created for e in first] == [True] and [e.created for e in again] == [False]
    assert first[0].item_id == again[0].item_id
    assert (await svc.queues.stats("safety")).open == 1


async def test_anomaly_stream_consumer_resolves_exemplars_from_interactions(aredis: aioredis.Redis) -> None:
    svc = ReviewService(parse_review_settings(review_config()), aredis)
    prompt = [{"role": "user", "content": "Summarise the refund policy."}]
    for rid, variant, reply in (
        ("c-1", "canary", "Sure! Refunds are always possible."),
        ("k-1", "control", "Refunds within 30 days with a receipt."),
    ):
        rec = dict(flagged_record(rid, variant=variant, completion=reply), messages=prompt)
        await aredis.xadd("rollguard:interactions", {"record": orjson.dumps(rec)})
    bundle = {
        "id": "an-7",
        "detector": "sycophancy",
        "statistic": "z",
        "threshold": 2.5,
        "severity": "high",
        "tenant": "acme",
        "variant": "canary",
        "exemplars": ["c-1", "k-1"],
    }
    await aredis.xadd("rollguard:{detectors}:anomalies", {"bundle": orjson.dumps(bundle)})
    await aredis.xadd("rollguard:{detectors}:anomalies", {"bundle": b"not json"})
    assert await svc.consume_anomalies(block_ms=10) == 1
    (item,) = await svc.queues.open_items("rollout")
    assert item.source_id == "an-7" and item.detectors == ["sycophancy"]
    cmp = item.payload["comparison"]
    assert cmp["similarity"] == 1.0
    assert cmp["canary"]["completion"].startswith("Sure!") and cmp["control"]["variant"] == "control"
    pending = await aredis.xpending("rollguard:{detectors}:anomalies", "review-router")
    assert pending["pending"] == 0


@pytest.fixture()
async def webhook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/page", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/page", got
    finally:
        await runner.cleanup()


async def test_sla_breach_pages_once(
    aredis: aioredis.Redis, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, got = webhook
    cfg = review_config(webhook_url=url, sla={"P1": {"claim_s": 1, "decide_s": 2}})
    svc = ReviewService(parse_review_settings(cfg), aredis)
    (esc,) = await svc.escalate_interaction(flagged_record("slow"))
    assert await svc.check_sla() == 0
    await asyncio.sleep(1.1)
    st = await svc.queues.stats("safety")
    assert st.claim_breaches == 1 and st.sla_state == "breached" and st.oldest_age_ms >= 1000
    assert await svc.check_sla() == 1
    assert await svc.check_sla() == 0
    assert got == [
        dict(got[0], event="review_sla_breach", queue="safety", item_id=esc.item_id, priority="P1")
    ]
    (page,) = await svc.queues.open_items("escalation")
    assert page.priority.value == "P1" and page.payload["sla_breach"]["item_id"] == esc.item_id


async def test_low_posterior_goes_to_lead_adjudication(aredis: aioredis.Redis) -> None:
    svc = ReviewService(parse_review_settings(review_config()), aredis)
    ana, ben, lea = _spec(svc, "ana"), _spec(svc, "ben"), _spec(svc, "lea")
    for n in range(12):
        await svc.escalate_anomaly({"id": f"a{n}", "detector": "drift", "tenant": "acme", "severity": "high"})
    verdicts = {
        "ana": ["acceptable"] * 6 + ["policy_violation"] * 6,
        "ben": ["acceptable"] * 6 + ["policy_violation"] * 5 + ["acceptable"],
    }
    for spec in (ana, ben):
        leases = await svc.claim(spec, "rollout", count=50)
        assert len(leases) == 12
        order = {it.id: i for i, it in enumerate(await svc.queues.open_items("rollout"))}
        for le in leases:
            await svc.verdict(spec, le.id, le.item_id, {"label": verdicts[spec.name][order[le.item_id]]})
    assert (await svc.queues.stats("rollout")).decided == 12
    agree = await svc.agreement("rollout")
    assert agree["n_items"] == 12 and agree["alpha"] is not None and 0.7 < agree["alpha"] < 0.9
    assert [(k["a"], k["b"], k["n"]) for k in agree["kappas"]] == [("ana", "ben", 12)]
    agg = await svc.aggregate("rollout")
    low = [i for i, a in agg.items() if a.posterior < 0.8]
    assert len(low) == 1
    adj = await svc.queues.open_items("adjudication")
    assert [it.payload["adjudicates"]["item_id"] for it in adj] == low
    await svc.aggregate("rollout")  # idempotent: no second adjudication item
    assert len(await svc.queues.open_items("adjudication")) == 1
    (le,) = await svc.claim(lea, "adjudication")
    await svc.verdict(lea, le.id, le.item_id, {"label": "policy_violation"})
    item = await svc.queues.get_item("rollout", low[0])
    assert item is not None and item.final_label == "policy_violation"
    prec = await svc.precision()
    # drift alerts: 6 acceptable (not confirmed), 6 policy violations (confirmed, incl. adjudicated)
    # With its 95 % Wilson interval (scipy binomtest; 6 of 12: 0.2538-0.7462).
    assert prec["drift"] == {
        "judged": 12,
        "confirmed": 6,
        "precision": 0.5,
        "ci_low": 0.2538,
        "ci_high": 0.7462,
    }
    assert await svc.variant_summary() == {"-": {"decided": 12, "acceptable": 6, "confirmed": 6}}


async def test_release_returns_the_item_to_others(aredis: aioredis.Redis) -> None:
    svc = ReviewService(parse_review_settings(review_config()), aredis)
    await svc.escalate_interaction(flagged_record("r1"))
    ana, ben = _spec(svc, "ana"), _spec(svc, "ben")
    (le,) = await svc.claim(ana, "safety")
    assert await svc.claim(ben, "safety") == []
    await svc.release(ana, le.id, le.item_id)
    (le2,) = await svc.claim(ben, "safety")
    assert le2.item_id == le.item_id
    events = [e["event"] for e in await svc.queues.audit("safety")]
    assert events[:3] == ["claim", "release", "claim"]


def test_parse_bundle_shapes() -> None:
    from gateway.review.service import parse_bundle

    assert parse_bundle({b"bundle": b'{"detector": "psi"}'}) == {"detector": "psi"}
    assert parse_bundle({"data": "[1, 2]"}) is None
    flat = parse_bundle(
        {"detector": "psi", "p_value": "0.01", "exemplars": '["a", "b"]', "variant": "canary"}
    )
    assert flat == {"detector": "psi", "p_value": 0.01, "exemplars": ["a", "b"], "variant": "canary"}


async def test_aclose_ends_loops_even_when_a_redis_call_swallows_the_cancellation(
    aredis: aioredis.Redis,
) -> None:
    # Regression (trial of `rollguard serve` on a busy port): shutdown waited forever on a
    # maintenance loop whose cancellation was swallowed inside a Redis call; the loop went on
    # to its 15 s sleep and round again.
    entered = asyncio.Event()

    class Swallowing(ReviewService):
        async def maintain(self) -> None:
            entered.set()
            # What a client library that drops the cancellation looks like:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    svc = Swallowing(parse_review_settings(review_config()), aredis, maintenance_s=3600)
    svc.start()
    await asyncio.wait_for(entered.wait(), 5)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.wait_for(svc.aclose(), 8)
    assert loop.time() - t0 < 3
    assert svc._tasks == []
