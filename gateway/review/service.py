"""The review loop: escalation in (flagged interactions, anomaly bundles), claims and verdicts with
grants, aggregation to adjudication, SLA paging, and the background maintenance.

``ReviewService`` is what the gateway holds: ``await service.escalate_interaction(record)`` from
the audit trail, ``service.start()`` / ``await service.aclose()`` around the app's lifespan
(started lazily by the first console or API request otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from detectors.agreement import (
    Aggregate,
    alpha_per_label,
    dawid_skene,
    detector_precision,
    krippendorff_alpha,
    pair_kappas,
)
from gateway.review.anomalies import AnomalyConsumer, parse_bundle, resolve_exemplars
from gateway.review.config import LabelSpec, Priority, ReviewerSpec, ReviewSettings, Role
from gateway.review.highlight import nearest_pair
from gateway.review.privacy import ReviewerTextRedactor
from gateway.review.queue import Lease, NewItem, ReviewItem, ReviewQueues, VerdictResult, now_ms
from gateway.review.routing import interaction_payload, route_anomaly, route_interaction
from gateway.review.sla import page_breaches
from gateway.store.keys import ANOMALIES_STREAM, INTERACTIONS_STREAM
from gateway.tools.eval_guardrails import wilson
from rollguard.errors import InvalidRequest, NotFound, PermissionDenied, StoreError

log = logging.getLogger("rollguard.review")

__all__ = ["Escalated", "ReviewService", "parse_bundle", "votes_of"]


@dataclass(frozen=True, slots=True)
class Escalated:
    """One routed item: ``created`` False when it was a duplicate of an item already queued."""

    queue: str
    item_id: str
    created: bool


def votes_of(items: list[ReviewItem]) -> dict[str, dict[str, str]]:
    """item id -> reviewer -> label, from decided items."""
    return {it.id: {r: str(v.get("label", "")) for r, v in it.verdicts.items()} for it in items}


class ReviewService:
    """Everything the console, the API and the gateway ask of the review subsystem.

    ``interactions_stream`` is where exemplar interactions of older anomaly bundles (without their
    records) are looked up (the newest ``exemplar_scan`` entries, ``gateway.review.anomalies``);
    ``anomaly_consumer`` this process's consumer name on the anomalies stream (default: unique per
    host, pid and start), ``anomaly_claim_idle_ms`` how long a bundle may sit unacknowledged in
    another consumer's pending list before this one takes it over; ``maintenance_s`` the period of
    the background sweep/SLA/aggregation loop in seconds; ``raw_tenants`` the tenants that opted
    in to raw content (``tenants.<t>.raw_content_opt_in``): their reviewers' notes and corrected
    replies are stored as written, everyone else's are redacted like audit records
    (``gateway.review.privacy``).
    """

    def __init__(
        self,
        settings: ReviewSettings,
        redis: aioredis.Redis,
        *,
        interactions_stream: str = INTERACTIONS_STREAM,
        anomalies_stream: str = ANOMALIES_STREAM,
        maintenance_s: float = 15.0,
        exemplar_scan: int = 5000,
        raw_tenants: frozenset[str] = frozenset(),
        anomaly_consumer: str | None = None,
        anomaly_claim_idle_ms: int = 60_000,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.queues = ReviewQueues(
            redis, lease_ms=int(settings.lease_s * 1000), retention_s=settings.retention_s
        )
        self.interactions_stream = interactions_stream
        self.anomalies_stream = anomalies_stream
        self.maintenance_s = maintenance_s
        self.exemplar_scan = exemplar_scan
        self.anomalies = AnomalyConsumer(
            redis, anomalies_stream, consumer=anomaly_consumer, claim_idle_ms=anomaly_claim_idle_ms
        )
        self.text_redactor = ReviewerTextRedactor(raw_tenants)
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._precision: tuple[int, dict[str, dict[str, Any]]] | None = None

    # -- escalation in ---------------------------------------------------------------------------

    async def escalate_interaction(self, record: dict[str, Any]) -> list[Escalated]:
        """Route a flagged interaction record (``Interaction.to_record()``) into review queues.
        Deduplicated per (interaction, queue). Raises ``StoreError`` when Redis fails."""
        routed = route_interaction(self.settings, record, now_ms())
        return await self._enqueue(routed)

    async def escalate_anomaly(self, bundle: Mapping[str, Any]) -> list[Escalated]:
        """Route an anomaly bundle (detector, statistic, threshold, effect size, p-value/ARL,
        window, variant/model/tenant, exemplar ids and records, severity). The nearest
        canary/control pair of the exemplars is attached for a side-by-side view."""
        exemplars = await resolve_exemplars(
            self.redis, bundle, interactions_stream=self.interactions_stream, scan=self.exemplar_scan
        )
        canary = [r for r in exemplars if _variant(r) == "canary"]
        control = [r for r in exemplars if _variant(r) == "control"]
        pair = nearest_pair(canary, control)
        comparison = None
        if pair is not None:
            comparison = {
                "similarity": pair["similarity"],
                "canary": interaction_payload(pair["canary"]),
                "control": interaction_payload(pair["control"]),
            }
        routed = route_anomaly(self.settings, bundle, now_ms(), exemplars[:10], comparison)
        return await self._enqueue(routed)

    async def _enqueue(self, routed: list[Any]) -> list[Escalated]:
        out: list[Escalated] = []
        for r in routed:
            iid, created = await self.queues.enqueue(r.queue, r.item, self.settings.k_for(r.queue))
            out.append(Escalated(r.queue, iid, created))
        return out

    async def consume_anomalies(self, consumer: str | None = None, block_ms: int = 1000) -> int:
        """Handle the anomaly bundles waiting (consumer group ``review-router`` on
        ``rollguard:{detectors}:anomalies``): idle ones another consumer left pending, then new ones;
        escalate each, then acknowledge it. Returns the number handled. A bundle that cannot be
        parsed is logged (by entry id) and acknowledged. Raises ``StoreError``."""
        return await self.anomalies.read(self.escalate_anomaly, consumer=consumer, block_ms=block_ms)

    # -- claims and verdicts ---------------------------------------------------------------------

    def queue_names(self, reviewer: ReviewerSpec) -> list[str]:
        """Queues ``reviewer`` may see (leads-only queues only for leads and operators)."""
        out = []
        for q in self.settings.queues:
            if q.leads_only and reviewer.role is Role.REVIEWER:
                continue
            if reviewer.can_queue(q.name) or reviewer.role is Role.OPERATOR:
                out.append(q.name)
        return out

    def tenant_scope(self, reviewer: ReviewerSpec) -> list[str] | None:
        """The tenants whose items ``reviewer`` may count and see; None = all."""
        if reviewer.role is Role.OPERATOR or "*" in reviewer.tenants:
            return None
        return list(reviewer.tenants)

    async def stats(self, reviewer: ReviewerSpec, queue: str) -> dict[str, Any]:
        """Queue counts and SLA state as ``reviewer`` may see them (their tenants only), plus k."""
        self.check_queue(reviewer, queue)
        st = await self.queues.stats(queue, tenants=self.tenant_scope(reviewer))
        return dict(st.to_dict(), k=self.settings.k_for(queue))

    def check_queue(self, reviewer: ReviewerSpec, queue: str, *, decide: bool = False) -> None:
        """Raises ``NotFound`` (unknown queue) or ``PermissionDenied`` (no grant; operators
        cannot decide)."""
        try:
            self.settings.queue(queue)
        except KeyError as exc:
            raise NotFound(f"unknown queue {queue!r}") from exc
        if queue not in self.queue_names(reviewer):
            raise PermissionDenied(f"no grant for queue {queue!r}")
        if decide and reviewer.role is Role.OPERATOR:
            raise PermissionDenied("operators do not give verdicts")

    def check_item(self, reviewer: ReviewerSpec, item: ReviewItem) -> None:
        """Raises ``PermissionDenied`` for an item of a tenant (or queue) not granted."""
        if reviewer.role is not Role.OPERATOR and not reviewer.can_tenant(item.tenant):
            raise PermissionDenied("no grant for this item's tenant")
        self.check_queue(reviewer, item.queue)

    async def claim(
        self, reviewer: ReviewerSpec, queue: str, count: int = 1, only: Collection[str] | None = None
    ) -> list[Lease]:
        """Lease up to ``count`` items of ``queue`` (expired leases are swept first); with
        ``only``, only among those item ids (the console's filtered "claim next")."""
        self.check_queue(reviewer, queue, decide=True)
        await self.queues.reclaim_expired(queue)
        tenants = ["*"] if "*" in reviewer.tenants else list(reviewer.tenants)
        return await self.queues.claim(queue, reviewer.name, tenants=tenants, count=count, only=only)

    async def item(self, reviewer: ReviewerSpec, queue: str, item_id: str) -> ReviewItem:
        """The item, if ``reviewer`` may see it. Raises ``NotFound``, ``PermissionDenied``."""
        self.check_queue(reviewer, queue)
        it = await self.queues.get_item(queue, item_id)
        if it is None:
            raise NotFound("no such review item (unknown or past retention)")
        self.check_item(reviewer, it)
        return it

    def shows_verdicts(self, reviewer: ReviewerSpec, item: ReviewItem) -> bool:
        """Blind review: other verdicts are hidden from reviewers until the item is decided."""
        spec = self.settings.queue(item.queue)
        return reviewer.role is not Role.REVIEWER or not spec.blind or item.status == "decided"

    async def verdict(
        self, reviewer: ReviewerSpec, lease_id: str, item_id: str, body: Mapping[str, Any]
    ) -> VerdictResult:
        """Record a verdict ``{"label", "note"?, "preference"? (canary|control|tie),
        "corrected"?}`` on the item ``lease_id`` is for. The note and corrected reply are redacted
        (PII, secrets) before they are stored unless the item's tenant opted in to raw content.
        Raises ``InvalidRequest`` (unknown label), ``NotFound`` (no such item),
        ``PermissionDenied`` (queue or item tenant not granted), ``LeaseLost``/``LeaseExpired``,
        ``LeaseMismatch`` (``item_id`` is not the leased item)."""
        queue, _prio, _entry = Lease.parse(lease_id)
        self.check_queue(reviewer, queue, decide=True)
        label = str(body.get("label", ""))
        if self.settings.label(label) is None:
            raise InvalidRequest(f"unknown verdict label {label!r}", param="label")
        pref = body.get("preference")
        if pref not in (None, "", "canary", "control", "tie"):
            raise InvalidRequest("preference must be canary, control or tie", param="preference")
        note = str(body.get("note") or "")[:4000]
        corrected = str(body["corrected"])[:20000] if body.get("corrected") else None
        if note or corrected:
            tenant = "" if not self.text_redactor.raw_tenants else await self._tenant_of(queue, item_id)
            note, corrected = self.text_redactor.redact(tenant, note, corrected)
        verdict = {"label": label, "note": note, "preference": pref or None, "corrected": corrected}
        tenants = ["*"] if "*" in reviewer.tenants else list(reviewer.tenants)
        result = await self.queues.verdict(lease_id, reviewer.name, item_id, verdict, tenants=tenants)
        if result.decided and queue == self.settings.adjudication_queue:
            await self._apply_adjudication(item_id, label)
        return result

    async def _tenant_of(self, queue: str, item_id: str) -> str:
        """The item's tenant (it never changes once queued). Raises ``NotFound``."""
        tenant = await self.queues.item_tenant(queue, item_id)
        if tenant is None:
            raise NotFound(
                f"no review item with this item_id in queue {queue!r} (unknown id, or decided and past "
                "retention)",
                param="item_id",
            )
        return tenant

    async def heartbeat(self, reviewer: ReviewerSpec, lease_id: str) -> int:
        return await self.queues.heartbeat(lease_id, reviewer.name)

    async def release(self, reviewer: ReviewerSpec, lease_id: str, item_id: str) -> None:
        await self.queues.release(lease_id, reviewer.name, item_id)

    async def _apply_adjudication(self, item_id: str, label: str) -> None:
        it = await self.queues.get_item(self.settings.adjudication_queue, item_id)
        if it is None:
            return
        target = it.payload.get("adjudicates") or {}
        if target.get("queue") and target.get("item_id"):
            await self.queues.set_final_label(str(target["queue"]), str(target["item_id"]), label)

    # -- knowledge -------------------------------------------------------------------------------

    async def window_items(self, queue: str) -> list[ReviewItem]:
        """Decided items of ``queue`` in the rolling window (``review.window_s``)."""
        return await self.queues.decided_items(queue, now_ms() - self.settings.window_s * 1000)

    async def agreement(self, queue: str) -> dict[str, Any]:
        """``{"queue", "n_items", "alpha", "alpha_per_label", "kappas": [...], "below_threshold"}``
        on the rolling window (items with at least two verdicts count)."""
        votes = votes_of(await self.window_items(queue))
        alpha = krippendorff_alpha(votes)
        multi = {i: v for i, v in votes.items() if len(v) >= 2}
        return {
            "queue": queue,
            "n_items": len(multi),
            "alpha": alpha,
            "alpha_per_label": alpha_per_label(multi) if multi else {},
            "kappas": [{"a": k.a, "b": k.b, "n": k.n, "kappa": k.kappa} for k in pair_kappas(votes)],
            "threshold": self.settings.alpha_threshold,
            "below_threshold": alpha is not None and alpha < self.settings.alpha_threshold,
        }

    async def aggregate(self, queue: str) -> dict[str, Aggregate]:
        """Dawid-Skene posteriors for the window's decided items of ``queue``; each item's
        ``final_label`` is set when its posterior reaches ``review.posterior_threshold``, else the
        item goes to the adjudication queue (once, deduplicated) for a lead."""
        if queue == self.settings.adjudication_queue:
            return {}
        items = await self.window_items(queue)
        agg = dawid_skene(votes_of(items))
        ts = now_ms()
        by_id = {it.id: it for it in items}
        for iid, a in agg.items():
            it = by_id[iid]
            if it.final_label is not None and it.final_label != "":
                continue
            if a.posterior >= self.settings.posterior_threshold:
                await self.queues.set_final_label(queue, iid, a.label)
                continue
            adj = self.settings.adjudication_queue
            sla = self.settings.sla[Priority.P2]
            payload = dict(it.payload)
            payload["adjudicates"] = {
                "queue": queue,
                "item_id": iid,
                "posterior": round(a.posterior, 4),
                "distribution": a.distribution,
                "verdicts": it.verdicts,
            }
            new = NewItem(
                source="adjudication",
                source_id=f"{queue}/{iid}",
                tenant=it.tenant,
                priority=Priority.P2,
                claim_by_ms=ts + sla.claim_s * 1000,
                decide_by_ms=ts + sla.decide_s * 1000,
                payload=payload,
                detectors=tuple(it.detectors),
                variant=it.variant,
                model=it.model,
            )
            await self.queues.enqueue(adj, new, self.settings.k_for(adj))
        return agg

    def final_label(self, item: ReviewItem, agg: Mapping[str, Aggregate]) -> str | None:
        """Adjudicated label, else the posterior label, else the single verdict's label."""
        if item.final_label:
            return item.final_label
        if item.id in agg:
            return agg[item.id].label
        labels = [str(v.get("label")) for v in item.verdicts.values()]
        return labels[0] if len(set(labels)) == 1 and labels else None

    async def precision_cached(self, max_age_s: float = 30.0) -> dict[str, dict[str, Any]]:
        """``precision()``, recomputed at most every ``max_age_s`` seconds (for item pages)."""
        ts = now_ms()
        if self._precision is None or ts - self._precision[0] > max_age_s * 1000:
            self._precision = (ts, await self.precision())
        return self._precision[1]

    async def precision(self) -> dict[str, dict[str, Any]]:
        """Reviewer-confirmed precision per detector / policy id over every queue's window:
        ``{detector: {"judged", "confirmed", "precision", "ci_low", "ci_high"}}``, the interval
        the 95 % Wilson score interval of ``confirmed / judged`` (``gateway.tools.eval_guardrails.
        wilson``: scipy's ``binomtest``; Wilson 1927), so one judged alert reads as 0 or 1 with an
        interval nearly as wide as [0, 1]. An item's label is its adjudicated label, else its
        Dawid-Skene posterior label, else its unanimous verdict."""
        rows: list[tuple[list[str], bool]] = []
        for it, spec in await self._labelled_window():
            if spec is not None:
                rows.append((it.detectors, spec.confirms_alert))
        out: dict[str, dict[str, Any]] = {}
        for d, p in detector_precision(rows).items():
            low, high = wilson(p.confirmed, p.judged)
            out[d] = {
                "judged": p.judged,
                "confirmed": p.confirmed,
                "precision": p.precision,
                "ci_low": round(low, 4),
                "ci_high": round(high, 4),
            }
        return out

    async def variant_summary(self) -> dict[str, dict[str, int]]:
        """Evidence for the rollout judge: per flag variant (``canary``/``control``/``-``), decided
        items in the window over every queue except adjudication/escalation, how many were
        judged ``acceptable`` (taxonomy) and how many confirmed the alert. Final labels as in
        ``precision()``."""
        out: dict[str, dict[str, int]] = {}
        for it, spec in await self._labelled_window():
            row = out.setdefault(it.variant or "-", {"decided": 0, "acceptable": 0, "confirmed": 0})
            row["decided"] += 1
            if spec is not None:
                row["acceptable"] += int(spec.acceptable)
                row["confirmed"] += int(spec.confirms_alert)
        return out

    async def _labelled_window(self) -> list[tuple[ReviewItem, LabelSpec | None]]:
        """``(item, label spec or None)`` for the decided items in the window of every queue but
        adjudication/escalation; the final label as in ``precision()``."""
        return await self.labelled_since(now_ms() - self.settings.window_s * 1000)

    async def labelled_since(self, since_ms: int) -> list[tuple[ReviewItem, LabelSpec | None]]:
        """``(item, label spec or None)`` for the items decided at or after ``since_ms`` (UTC epoch
        ms) in every queue but adjudication/escalation; the final label as in ``precision()``
        (the rollout judge's reviewer rates, ``gateway.rollout.review_stats``). Raises
        ``StoreError``."""
        out: list[tuple[ReviewItem, LabelSpec | None]] = []
        for q in self.settings.queues:
            if q.name in (self.settings.adjudication_queue, self.settings.escalation_queue):
                continue
            items = await self.queues.decided_items(q.name, since_ms)
            agg = dawid_skene(votes_of(items))
            for it in items:
                lab = self.final_label(it, agg)
                out.append((it, self.settings.label(lab) if lab else None))
        return out

    # -- SLA and maintenance ---------------------------------------------------------------------

    async def check_sla(self) -> int:
        """Page every newly breached item once (``gateway.review.sla.page_breaches``). Returns the
        number of items paged."""
        return await page_breaches(self.settings, self.queues)

    async def maintain(self) -> None:
        """One maintenance round: sweep expired leases, page SLA breaches, aggregate."""
        for q in self.settings.queues:
            await self.queues.reclaim_expired(q.name)
        await self.check_sla()
        for q in self.settings.queues:
            if self.settings.k_for(q.name) >= 2:
                await self.aggregate(q.name)

    def start(self) -> None:
        """Start the background loops (maintenance, anomaly consumer). Idempotent; needs a
        running event loop."""
        if self._tasks:
            return
        self._stop.clear()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._loop_maintenance()), loop.create_task(self._loop_anomalies())]

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Stop the background loops: set the stop event (each loop checks it between rounds),
        cancel, and wait up to ``timeout_s`` seconds in all. A cancellation swallowed inside a
        Redis call (the loop goes on) is repeated every second, and the stop event ends the
        loop at its next round anyway, so shutdown never hangs on it."""
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        deadline = asyncio.get_running_loop().time() + timeout_s
        pending = set(tasks)
        while pending:
            for t in pending:
                t.cancel()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning("review: %d background loop(s) did not stop in %.0f s", len(pending), timeout_s)
                return
            _, pending = await asyncio.wait(pending, timeout=min(1.0, left))
        for t in tasks:
            if not t.cancelled() and t.exception() is not None:
                log.warning("review: background loop ended with %r", t.exception())

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the service is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def _loop_maintenance(self) -> None:
        while not self._stop.is_set():
            try:
                await self.maintain()
            except StoreError as exc:
                log.warning("review maintenance failed: %s", exc)
            await self._pause(self.maintenance_s)

    async def _loop_anomalies(self) -> None:
        while not self._stop.is_set():
            try:
                await self.consume_anomalies()
            except StoreError as exc:
                log.warning("review anomaly consumer failed: %s", exc)
                await self._pause(1.0)


def _variant(record: Mapping[str, Any]) -> str | None:
    meta = record.get("metadata") or {}
    v = meta.get("variant") if isinstance(meta, Mapping) else None
    return str(v) if v else None
