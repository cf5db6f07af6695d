"""SLA paging of the review queues: an item past its claim or decide deadline is paged once, by a
POST of ``{"event": "review_sla_breach", ...}`` to ``review.webhook_url`` (when set; 5 s timeout)
and a P1 copy in the escalation queue."""

from __future__ import annotations

import logging

import aiohttp

from gateway.review.config import Priority, ReviewSettings
from gateway.review.queue import NewItem, ReviewQueues, now_ms

log = logging.getLogger("rollguard.review")


async def page_breaches(settings: ReviewSettings, queues: ReviewQueues) -> int:
    """Page every newly breached item of ``queues`` once: POST to ``review.webhook_url`` when
    set, and a P1 item in the escalation queue. Returns the number of items paged. Raises
    ``StoreError``; a failing webhook is logged, never raised."""
    paged = 0
    esc = settings.escalation_queue
    for q in settings.queues:
        if q.name == esc:
            continue
        for iid in await queues.breached_items(q.name):
            if not await queues.mark_paged(q.name, iid):
                continue
            paged += 1
            await _page(settings, queues, q.name, iid)
    return paged


async def _page(settings: ReviewSettings, queues: ReviewQueues, queue: str, item_id: str) -> None:
    it = await queues.get_item(queue, item_id)
    if it is None:
        return
    ts = now_ms()
    body = {
        "event": "review_sla_breach",
        "queue": queue,
        "item_id": item_id,
        "priority": it.priority.value,
        "age_ms": ts - it.created_ms,
        "claim_by_ms": it.claim_by_ms,
        "decide_by_ms": it.decide_by_ms,
    }
    sla = settings.sla[Priority.P1]
    page = NewItem(
        source="sla",
        source_id=f"{queue}/{item_id}",
        tenant=it.tenant,
        priority=Priority.P1,
        claim_by_ms=ts + sla.claim_s * 1000,
        decide_by_ms=ts + sla.decide_s * 1000,
        payload=dict(it.payload, sla_breach=body),
        detectors=tuple(it.detectors),
        variant=it.variant,
        model=it.model,
    )
    esc = settings.escalation_queue
    await queues.enqueue(esc, page, settings.k_for(esc))
    if settings.webhook_url:
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with (
                aiohttp.ClientSession(timeout=timeout) as s,
                s.post(settings.webhook_url, json=body) as resp,
            ):
                if resp.status >= 400:
                    log.warning("review SLA webhook answered HTTP %d", resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("review SLA webhook failed: %s", type(exc).__name__)
