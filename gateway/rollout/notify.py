"""What a breach tells people: a review item with the evidence (P1 for a rollback, P2 for a pause)
and, for a rollback, a POST to the alert webhook.

The item goes to ``rollouts.review_queue`` when the review section defines that queue, else to the
review escalation queue; it is deduplicated per (rollout, step, judgment) by the queue's own item
id, so a controller that retries after a crash never opens it twice. Without a ``review`` section
no item is opened (logged). The webhook gets ``{"event": "rollout_rollback", "rollout", "flag",
"step", "percent", "metric", "reason", "evidence_id", "at_ms"}`` (5 s timeout; a failure is logged,
never raised). Evidence carries statistics only: counts, means, intervals; never a reply text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx
import redis.asyncio as aioredis

from gateway.review.items import NewItem
from gateway.review.queue import ReviewQueues
from rollguard.review_settings import Priority, ReviewSettings
from rollguard.rollout_settings import RolloutsSettings

log = logging.getLogger("rollguard.rollout")


class BreachNotifier:
    """Opens breach review items and calls the alert webhook."""

    def __init__(
        self, redis: aioredis.Redis, review: ReviewSettings | None, rollouts: RolloutsSettings
    ) -> None:
        self.redis = redis
        self.review = review
        self.webhook_url = rollouts.webhook_url
        self.queue: str | None = None
        if review is not None:
            names = {q.name for q in review.queues}
            self.queue = rollouts.review_queue if rollouts.review_queue in names else review.escalation_queue
        self.queues = (
            ReviewQueues(redis, lease_ms=int(review.lease_s * 1000), retention_s=review.retention_s)
            if review is not None
            else None
        )

    async def open_item(
        self,
        *,
        rollout_id: str,
        flag: str,
        step: int,
        priority: Priority,
        evidence_id: str,
        judgment: Mapping[str, Any],
    ) -> str | None:
        """Queue the breach for review; returns the item id (None without a review section).
        Raises ``StoreError``."""
        if self.queues is None or self.queue is None or self.review is None:
            log.warning("rollout %s: breach at step %d (no review section: no item opened)", rollout_id, step)
            return None
        now = int(time.time() * 1000)
        sla = self.review.sla[priority]
        item = NewItem(
            source="rollout",
            source_id=f"{rollout_id}:{step}:{evidence_id}",
            tenant="default",
            priority=priority,
            claim_by_ms=now + sla.claim_s * 1000,
            decide_by_ms=now + sla.decide_s * 1000,
            payload={
                "kind": "rollout_breach",
                "rollout_id": rollout_id,
                "flag": flag,
                "step": step,
                "evidence_id": evidence_id,
                "judgment": dict(judgment),
            },
            detectors=tuple(str(m) for m in judgment.get("failed") or ()) or ("rollout",),
            variant="canary",
        )
        iid, _created = await self.queues.enqueue(self.queue, item, self.review.k_for(self.queue))
        return iid

    async def webhook(self, body: Mapping[str, Any]) -> bool:
        """POST ``body`` to the alert webhook; True when it answered 2xx. Never raises."""
        if not self.webhook_url:
            return False
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                resp = await client.post(self.webhook_url, json=dict(body))
        except httpx.HTTPError as exc:
            log.warning("rollout alert webhook failed: %s", type(exc).__name__)
            return False
        if resp.status_code >= 300:
            log.warning("rollout alert webhook answered HTTP %d", resp.status_code)
            return False
        return True
