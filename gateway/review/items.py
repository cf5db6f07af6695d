"""The records of the review queues: what the router hands in (``NewItem``), a claimed slot
(``Lease``), an item as stored (``ReviewItem``), and the results of a verdict, a sweep and a count.
No I/O; ``gateway.review.queue`` reads and writes them."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.review.config import Priority
from rollguard.errors import InvalidRequest


def now_ms() -> int:
    """Wall-clock UTC epoch milliseconds."""
    return int(time.time() * 1000)


def item_id_for(queue: str, source_key: str) -> str:
    """Deterministic item id of ``source_key`` (``interaction:<id>`` or ``anomaly:<id>``) in
    ``queue``: the dedup key. 24 hex characters of SHA-256."""
    return hashlib.sha256(f"{queue}\x00{source_key}".encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class NewItem:
    """What the router hands the queue. ``payload`` is the JSON-ready item body (redacted
    content, decisions, findings); ``detectors`` the policy ids / detector names that raised it."""

    source: str
    source_id: str
    tenant: str
    priority: Priority
    claim_by_ms: int
    decide_by_ms: int
    payload: dict[str, Any]
    detectors: tuple[str, ...] = ()
    variant: str | None = None
    model: str | None = None

    @property
    def source_key(self) -> str:
        return f"{self.source}:{self.source_id}"


@dataclass(frozen=True, slots=True)
class Lease:
    """A claimed slot. ``id`` (``queue:P<n>:entry``) is what the API and console pass around;
    ``expires_ms`` = claim or last heartbeat + lease length, UTC epoch ms on the Redis server's
    clock (the clock that decides expiry)."""

    queue: str
    priority: Priority
    entry: str
    item_id: str
    expires_ms: int

    @property
    def id(self) -> str:
        return f"{self.queue}:{self.priority.value}:{self.entry}"

    @staticmethod
    def parse(lease_id: str) -> tuple[str, Priority, str]:
        """``(queue, priority, entry)``; raises ``InvalidRequest`` for a malformed id."""
        try:
            queue, prio, entry = lease_id.split(":")
            return queue, Priority(prio), entry
        except ValueError as exc:
            raise InvalidRequest("malformed lease id", param="lease") from exc


@dataclass(frozen=True, slots=True)
class VerdictResult:
    """``count`` verdicts of ``k`` recorded; ``decided`` when ``count == k``."""

    item_id: str
    count: int
    k: int

    @property
    def decided(self) -> bool:
        return self.count >= self.k


@dataclass(slots=True)
class SweepResult:
    """Outcome of an expired-lease sweep over every priority stream of a queue: ``returned``
    leases went back to the queue, ``deleted`` slot entries had been deleted meanwhile,
    ``pages`` ``XAUTOCLAIM`` calls were made (full cursor iteration)."""

    returned: int = 0
    deleted: int = 0
    pages: int = 0


@dataclass(slots=True)
class QueueStats:
    """Counts and SLA state of one queue at ``at_ms``. Ages in milliseconds."""

    queue: str
    open: int = 0
    claimed: int = 0
    waiting_slots: int = 0
    decided: int = 0
    claim_breaches: int = 0
    decide_breaches: int = 0
    oldest_age_ms: int = 0
    by_priority: dict[str, int] = field(default_factory=dict)
    scoped: bool = False
    """True when counted for a reviewer's tenants only (slot-level and decided counts left at 0)."""

    @property
    def sla_state(self) -> str:
        """``idle`` (nothing open) | ``within`` (items open, none past its SLA) | ``breached``."""
        if self.claim_breaches or self.decide_breaches:
            return "breached"
        return "within" if self.open else "idle"

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "open": self.open,
            "claimed": self.claimed,
            "waiting_slots": self.waiting_slots,
            "decided": self.decided,
            "claim_breaches": self.claim_breaches,
            "decide_breaches": self.decide_breaches,
            "oldest_age_ms": self.oldest_age_ms,
            "sla_state": self.sla_state,
            "by_priority": dict(self.by_priority),
            "scoped": self.scoped,
        }


@dataclass(slots=True)
class ReviewItem:
    """A stored item with its verdicts (reviewer -> verdict dict) and live leases."""

    id: str
    queue: str
    status: str
    tenant: str
    source: str
    source_id: str
    priority: Priority
    k: int
    created_ms: int
    claim_by_ms: int
    decide_by_ms: int
    payload: dict[str, Any]
    detectors: list[str]
    variant: str | None
    model: str | None
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    leases: dict[str, str] = field(default_factory=dict)
    decided_ms: int | None = None
    final_label: str | None = None

    @staticmethod
    def from_hash(
        queue: str, h: dict[str, str], verdicts: dict[str, str], leases: dict[str, str]
    ) -> ReviewItem:
        return ReviewItem(
            id=h["id"],
            queue=queue,
            status=h.get("status", "open"),
            tenant=h.get("tenant", ""),
            source=h.get("source", ""),
            source_id=h.get("source_id", ""),
            priority=Priority(h.get("priority", "P2")),
            k=int(h.get("k", "1")),
            created_ms=int(h.get("created_ms", "0")),
            claim_by_ms=int(h.get("claim_by_ms", "0")),
            decide_by_ms=int(h.get("decide_by_ms", "0")),
            payload=orjson.loads(h.get("payload", "{}")),
            detectors=[d for d in h.get("detectors", "").split(",") if d],
            variant=h.get("variant") or None,
            model=h.get("model") or None,
            verdicts={r: orjson.loads(v) for r, v in verdicts.items()},
            leases=dict(leases),
            decided_ms=int(h["decided_ms"]) if h.get("decided_ms") else None,
            final_label=h.get("final_label") or None,
        )

    def to_dict(self, *, show_verdicts: bool = True) -> dict[str, Any]:
        return {
            "id": self.id,
            "queue": self.queue,
            "status": self.status,
            "tenant": self.tenant,
            "source": self.source,
            "source_id": self.source_id,
            "priority": self.priority.value,
            "k": self.k,
            "created_ms": self.created_ms,
            "claim_by_ms": self.claim_by_ms,
            "decide_by_ms": self.decide_by_ms,
            "decided_ms": self.decided_ms,
            "detectors": list(self.detectors),
            "variant": self.variant,
            "model": self.model,
            "payload": self.payload,
            "verdict_count": len(self.verdicts),
            "verdicts": self.verdicts if show_verdicts else None,
            "final_label": self.final_label,
        }
