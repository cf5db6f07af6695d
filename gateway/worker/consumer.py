"""The detector worker's consumer (``rollguard worker``): a member of the consumer group ``detectors``
on ``rollguard:interactions``; N workers share the stream, each under its own consumer name
(``gateway.store.keys.consumer_name``). Every Redis name is in ``gateway.store.keys``.

For every batch of entries the worker

1. parses each entry's ``record`` field (``Interaction.to_record()`` JSON) and runs every
   per-interaction shortcut detector (in a thread: it is CPU work);
2. in one optimistic Redis transaction (WATCH the state and the seen-set, MULTI/EXEC): loads the
   window-detector state, skips interactions already counted (the seen-set: a sorted set of
   interaction ids scored by the time they were counted, trimmed after ``seen_retention_ms``; so
   a reclaimed entry or a duplicate delivery is never counted twice), feeds the rest to the
   window engine, writes the new state, adds the ids to the seen-set, appends per-interaction
   results to ``rollguard:{detectors}:signals``, the batch's alert lifecycle events
   (``WindowEngine.drain``) to ``rollguard:{detectors}:anomaly_events`` and the anomaly of every
   newly opened incident to ``rollguard:{detectors}:anomalies`` (one entry per incident, not per
   firing or group: see ``detectors.alerts``; the bundle carries its exemplar records,
   ``gateway.worker.exemplars``).
   A conflicting writer makes EXEC fail and the batch is re-applied on fresh state;
3. acknowledges the entries (XACK) once EXEC succeeded: nothing is acknowledged before its
   results are written. A worker that dies between EXEC and XACK leaves the entries pending; they
   are reclaimed and found in the seen-set, so they count once and write nothing twice.

Every key of the transaction shares the hash tag ``{detectors}`` (``rollguard:{detectors}:state``,
``:seen``, ``:variant_sums``, ``:signals``, ``:anomalies``, ``:anomaly_events``; one Redis Cluster
slot); the interactions stream is in its own slot, hence the XACK outside the transaction.
``gateway.worker.migrate`` moves the untagged names of earlier versions at startup.

Crashed workers: every ``claim_idle_ms`` the worker runs XAUTOCLAIM from cursor ``0-0`` and follows
the cursor to the end, taking over entries idle in another consumer's pending list. Entries that
were deleted from the stream meanwhile come back as deleted ids: they are logged, counted
(``deleted``) and acknowledged so they leave the pending list. A record that cannot be parsed is
logged, counted (``bad_records``), written to ``rollguard:{detectors}:signals`` as an error and acknowledged.

State keys: ``rollguard:{detectors}:state`` (JSON of ``WindowEngine.to_dict()``; reference windows,
CUSUM statistics, comparisons, open incidents of the alert lifecycle), ``rollguard:{detectors}:seen``
(sorted set of interaction ids), ``rollguard:{detectors}:variant_sums`` (JSON of
``gateway.worker.variant_sums``: per flag variant, latency / time-to-first-token histograms and
shadow would-block counts for the rollout judge; written in the same transaction). Reference
policy: ``detectors.rolling_reference`` (fixed baseline by default) from config.

Config (``detectors:`` in the YAML): the ``EngineConfig`` fields, plus ``worker:`` with ``group``,
``batch``, ``block_ms``, ``claim_idle_ms``, ``signals_maxlen``, ``seen_retention_ms``,
``forget_idle_ms``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from opentelemetry import metrics
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError, WatchError

from detectors.engine import EngineConfig, WindowEngine, observation, prompt_of
from detectors.reference_model import ReferenceModel
from detectors.shortcuts import ShortcutDetectors
from gateway.store.keys import (
    ANOMALIES_STREAM,
    ANOMALY_EVENTS_STREAM,
    DETECTORS_GROUP,
    SEEN_KEY,
    SIGNALS_STREAM,
    STATE_KEY,
    VARIANT_SUMS_KEY,
)
from gateway.store.streams import ensure_group, forget_idle_consumers, text
from gateway.worker.entries import Entry, dumps, parse_entry
from gateway.worker.exemplars import ExemplarCache
from gateway.worker.migrate import migrate_detector_keys
from gateway.worker.variant_sums import VariantSums, fold
from rollguard.errors import StoreError
from rollguard.types import Signal

log = logging.getLogger("rollguard.worker")

_meter = metrics.get_meter("rollguard.detectors")
_flag_counter = _meter.create_counter(
    "rollguard.detector.flags", unit="1", description="interactions flagged, per detector and variant"
)
_seen_counter = _meter.create_counter(
    "rollguard.detector.interactions", unit="1", description="interactions scored, per variant"
)

Scores = tuple[dict[str, dict[str, Signal]], dict[str, int]]
"""Shortcut signals and the prompt's topic cluster, per entry id."""


@dataclass(slots=True)
class WorkerOptions:
    """Worker knobs (``detectors.worker`` in the config)."""

    group: str = DETECTORS_GROUP
    batch: int = 100
    block_ms: int = 1000
    claim_idle_ms: int = 30_000
    signals_maxlen: int = 100_000
    seen_retention_ms: int = 7 * 24 * 3600 * 1000
    """How long an interaction id stays in the seen-set after it was counted (0 = forever). An
    entry is acknowledged right after the transaction that records its id (a worker that dies in
    between leaves it pending, reclaimed after ``claim_idle_ms``), so only a duplicate delivery or
    a reclaim, seconds later, can arrive after that."""
    forget_idle_ms: int = 3_600_000
    """Consumers with nothing pending that have not read for this long (processes gone: every
    process has its own name) are deleted from the group after each reclaim; 0 = never."""
    idle_exit_s: float | None = None
    """Exit after this many seconds without work (tests and one-shot backfills); None = run."""


@dataclass(slots=True)
class WorkerStats:
    """Counters of one worker run."""

    processed: int = 0
    duplicates: int = 0
    reclaimed: int = 0
    deleted: int = 0
    bad_records: int = 0
    anomalies: int = 0
    alert_updates: int = 0
    resolved: int = 0
    conflicts: int = 0
    batches: int = 0
    groups_recreated: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Applied:
    """What one batch changed: the ids counted now, per-interaction results, lifecycle events
    and the bundles of newly opened incidents."""

    new_ids: list[str] = field(default_factory=list)
    results: list[tuple[str, bytes]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    bundles: list[bytes] = field(default_factory=list)
    state: bytes = b""
    variant_sums: bytes = b""


def _without_bundle(event: Mapping[str, Any]) -> dict[str, Any]:
    """A lifecycle event without its anomaly bundle (that goes to the anomalies stream)."""
    return {k: v for k, v in event.items() if k != "anomaly"}


class DetectorWorker:
    """One worker process's loop; see the module docstring. ``stop()`` ends it after the batch."""

    def __init__(
        self,
        client: aioredis.Redis,
        stream: str,
        consumer: str,
        engine_config: EngineConfig,
        options: WorkerOptions,
        detectors: ShortcutDetectors | None = None,
        reference: ReferenceModel | None = None,
        exemplars: ExemplarCache | None = None,
    ) -> None:
        self.r = client
        self.stream = stream
        self.consumer = consumer
        self.engine_config = engine_config
        self.opt = options
        self.detectors = detectors or ShortcutDetectors()
        self.reference = reference or ReferenceModel()
        self.exemplars = exemplars or ExemplarCache()
        self.stats = WorkerStats()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def ensure_group(self) -> None:
        """Create the consumer group if missing. Raises ``StoreError``."""
        await ensure_group(self.r, self.stream, self.opt.group)

    async def _start(self) -> None:
        """Move the untagged detector keys of earlier versions (``gateway.worker.migrate``), then
        create the consumer group. Raises ``StoreError``."""
        try:
            await migrate_detector_keys(self.r)
        except RedisError as exc:
            raise StoreError(f"cannot migrate the detector keys: {type(exc).__name__}") from exc
        await self.ensure_group()

    async def run(self) -> WorkerStats:
        """Process until ``stop()`` (or ``idle_exit_s`` without work). Redis errors are logged and
        retried with backoff."""
        await self._start()
        last_claim = 0.0
        last_work = time.monotonic()
        backoff = 0.1
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                did = 0
                if now - last_claim >= self.opt.claim_idle_ms / 1000 / 2:
                    last_claim = now
                    did += await self.reclaim()
                did += await self.read_new()
                backoff = 0.1
            except ResponseError as exc:
                if "NOGROUP" not in str(exc) or not await self._recreate_group():
                    await self._back_off(exc, backoff)
                    backoff = min(backoff * 2, 5.0)
                continue
            except RedisError as exc:
                log.warning("worker %s: redis error %s; retrying in %.1f s", self.consumer, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if did:
                last_work = time.monotonic()
            elif self.opt.idle_exit_s is not None and time.monotonic() - last_work >= self.opt.idle_exit_s:
                break
        return self.stats

    async def _recreate_group(self) -> bool:
        """The stream or its group is gone (Redis emptied by FLUSHALL, or restarted without
        persistence): create the group again at ``0`` and resume (issue 10: the worker once
        answered NOGROUP every 5 s forever). True when the group exists again."""
        log.warning(
            "worker %s: consumer group %r is gone (store emptied?); recreating it",
            self.consumer,
            self.opt.group,
        )
        try:
            await self.ensure_group()
        except StoreError as exc:
            log.warning("worker %s: cannot recreate the consumer group: %s", self.consumer, exc)
            return False
        self.stats.groups_recreated += 1
        return True

    async def _back_off(self, exc: RedisError, seconds: float) -> None:
        log.warning("worker %s: redis error %s; retrying in %.1f s", self.consumer, exc, seconds)
        await asyncio.sleep(seconds)

    async def read_new(self) -> int:
        """Read (XREADGROUP ``>``, blocking up to ``block_ms``) and process one batch of new
        entries. Returns the number read."""
        resp: Any = await self.r.xreadgroup(
            self.opt.group, self.consumer, {self.stream: ">"}, count=self.opt.batch, block=self.opt.block_ms
        )
        read = 0
        for _stream, entries in resp or []:
            await self.process([parse_entry(eid, f) for eid, f in entries])
            read += len(entries)
        return read

    async def reclaim(self) -> int:
        """XAUTOCLAIM entries idle for ``claim_idle_ms`` from any consumer (a crashed or restarted
        worker's pending list), following the cursor to the end; processes them and acknowledges
        deleted ones. Returns the number of entries taken."""
        cursor = "0-0"
        taken = 0
        while True:
            resp = await self.r.xautoclaim(
                self.stream,
                self.opt.group,
                self.consumer,
                self.opt.claim_idle_ms,
                start_id=cursor,
                count=self.opt.batch,
            )
            cursor = text(resp[0])
            await self._ack_deleted([text(d) for d in (resp[2] if len(resp) > 2 else [])])
            live = [(eid, f) for eid, f in resp[1] or [] if f is not None]
            if live:
                self.stats.reclaimed += len(live)
                log.info("worker %s: reclaimed %d idle entries", self.consumer, len(live))
                await self.process([parse_entry(eid, f) for eid, f in live])
                taken += len(live)
            if cursor in ("0-0", "0"):
                await self._forget_dead()
                return taken

    async def _forget_dead(self) -> None:
        """Delete the group's consumers with nothing pending that have not read for
        ``forget_idle_ms`` (names of worker processes gone; 0 = keep them)."""
        if self.opt.forget_idle_ms <= 0:
            return
        gone = await forget_idle_consumers(self.r, self.stream, self.opt.group, self.opt.forget_idle_ms)
        if gone:
            log.info("worker %s: forgot %d idle consumer(s)", self.consumer, len(gone))

    async def _ack_deleted(self, deleted: list[str]) -> None:
        """Count, log and acknowledge pending entries deleted from the stream before processing."""
        if not deleted:
            return
        self.stats.deleted += len(deleted)
        log.warning(
            "worker %s: %d pending entries were deleted from %s before processing: %s",
            self.consumer,
            len(deleted),
            self.stream,
            ", ".join(deleted[:20]),
        )
        await self.r.xack(self.stream, self.opt.group, *deleted)

    async def process(self, entries: Sequence[Entry]) -> None:
        """Score, apply to the window state and acknowledge one batch (see the module docstring);
        a conflicting writer (WATCH) makes the batch be re-applied on fresh state."""
        if not entries:
            return
        entries, signals, clusters = await asyncio.to_thread(self._score_safely, entries)
        self.stats.batches += 1
        self.exemplars.remember(e.record for e in entries if e.record is not None)
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    applied = await self._apply(pipe, entries, (signals, clusters))
                    break
                except WatchError:
                    self.stats.conflicts += 1
        await self.r.xack(self.stream, self.opt.group, *[e.entry_id for e in entries])
        self._account(entries, applied)
        self._export([e for e in entries if e.record is not None], signals, applied.new_ids)

    async def _apply(self, pipe: Pipeline, entries: Sequence[Entry], scores: Scores) -> _Applied:
        """One optimistic transaction: WATCH the state and the seen-set, fold the unseen entries
        into the window engine, write everything (one hash slot; the caller acknowledges).
        Raises ``WatchError``."""
        await pipe.watch(STATE_KEY, SEEN_KEY, VARIANT_SUMS_KEY)
        raw = await pipe.get(STATE_KEY)
        raw_sums = await pipe.get(VARIANT_SUMS_KEY)
        ids = [e.interaction_id for e in entries]
        seen_scores = await pipe.zmscore(SEEN_KEY, ids)
        seen = {i for i, s in zip(ids, seen_scores, strict=True) if s is not None}
        engine = (
            WindowEngine.from_dict(orjson.loads(raw), self.engine_config)
            if raw
            else WindowEngine(self.engine_config)
        )
        sums: VariantSums = orjson.loads(raw_sums) if raw_sums else {}
        applied = self._fold(engine, entries, seen, scores, sums)
        pipe.multi()  # type: ignore[no-untyped-call]
        self._write(pipe, applied)
        await pipe.execute()
        return applied

    def _fold(
        self,
        engine: WindowEngine,
        entries: Sequence[Entry],
        seen: set[str],
        scores: Scores,
        sums: VariantSums,
    ) -> _Applied:
        """Feed the entries not yet counted to ``engine`` and to the per-variant ``sums``
        (``gateway.worker.variant_sums``; no I/O); drain the engine's lifecycle events."""
        signals, clusters = scores
        out = _Applied()
        for e in entries:
            if e.interaction_id in seen or e.interaction_id in out.new_ids:
                continue
            out.new_ids.append(e.interaction_id)
            if e.record is None:
                out.results.append((e.interaction_id, orjson.dumps({"error": e.error})))
                continue
            sig = signals[e.entry_id]
            fold(sums, e.record)
            out.results.append((e.interaction_id, dumps({k: s.to_dict() for k, s in sig.items()})))
            try:
                engine.update(observation(e.record, sig, clusters[e.entry_id]))
            except Exception as exc:  # one odd record must not stop the stream
                log.error(
                    "worker %s: entry %s not applied to the windows: %s",
                    self.consumer,
                    e.entry_id,
                    type(exc).__name__,
                )
                self.stats.bad_records += 1
        out.events = engine.drain()
        out.bundles = [
            dumps(self.exemplars.with_exemplars(ev["anomaly"])) for ev in out.events if ev["event"] == "open"
        ]
        out.state = dumps(engine.to_dict())
        out.variant_sums = dumps(sums)
        return out

    def _write(self, pipe: Pipeline, applied: _Applied) -> None:
        """Queue the batch's writes on the MULTI ``pipe``: state, seen-set, signals, anomaly
        bundles and lifecycle events."""
        if applied.new_ids:
            pipe.set(STATE_KEY, applied.state)
            pipe.set(VARIANT_SUMS_KEY, applied.variant_sums)
            now_ms = int(time.time() * 1000)
            pipe.zadd(SEEN_KEY, dict.fromkeys(applied.new_ids, now_ms))
            if self.opt.seen_retention_ms > 0:
                pipe.zremrangebyscore(SEEN_KEY, "-inf", now_ms - self.opt.seen_retention_ms)
        for iid, body in applied.results:
            pipe.xadd(
                SIGNALS_STREAM, {"id": iid, "signals": body}, maxlen=self.opt.signals_maxlen, approximate=True
            )
        for b in applied.bundles:
            pipe.xadd(ANOMALIES_STREAM, {"bundle": b})
        for ev in applied.events:
            pipe.xadd(
                ANOMALY_EVENTS_STREAM,
                {"event": ev["event"], "id": ev["id"], "data": dumps(_without_bundle(ev))},
                maxlen=self.opt.signals_maxlen,
                approximate=True,
            )

    def _account(self, entries: Sequence[Entry], applied: _Applied) -> None:
        """Update the counters and log the batch's unusable entries, anomalies and resolutions."""
        fresh = set(applied.new_ids)
        bad = [e for e in entries if e.record is None and e.interaction_id in fresh]
        self.stats.duplicates += len(entries) - len(applied.new_ids)
        self.stats.bad_records += len(bad)
        self.stats.processed += len(applied.new_ids) - len(bad)
        self.stats.anomalies += len(applied.bundles)
        self.stats.alert_updates += sum(1 for ev in applied.events if ev["event"] == "update")
        self.stats.resolved += sum(1 for ev in applied.events if ev["event"] == "resolve")
        for e in bad:
            log.error("worker %s: entry %s unusable: %s", self.consumer, e.entry_id, e.error)
        for b in applied.bundles:
            log.warning("anomaly: %s", b[:300].decode(errors="replace"))
        for ev in applied.events:
            if ev["event"] == "resolve":
                log.info("anomaly %s resolved after %d firings", ev["id"], ev["count"])

    def _score_safely(
        self, entries: Sequence[Entry]
    ) -> tuple[list[Entry], dict[str, dict[str, Signal]], dict[str, int]]:
        """Score ``entries`` at once; only when that fails, one by one, turning every record the
        detectors fail on into an error entry (the whole kind of fault: a record no check
        foresaw must not crash the worker on every restart)."""
        good = [e for e in entries if e.record is not None]
        try:
            signals, clusters = self._score(good)
            return list(entries), signals, clusters
        except Exception:
            log.warning("worker %s: batch scoring failed; scoring entries one by one", self.consumer)
        out: list[Entry] = []
        signals, clusters = {}, {}
        for e in entries:
            if e.record is not None:
                try:
                    s1, c1 = self._score([e])
                    signals.update(s1)
                    clusters.update(c1)
                except Exception as exc:
                    e = Entry(e.entry_id, e.interaction_id, None, f"detectors failed: {type(exc).__name__}")
            out.append(e)
        return out, signals, clusters

    def _score(self, entries: Sequence[Entry]) -> tuple[dict[str, dict[str, Signal]], dict[str, int]]:
        """Shortcut signals and the prompt's topic cluster per entry id (CPU work, in a thread)."""
        if not entries:
            return {}, {}
        convs = [list((e.record or {}).get("messages") or []) for e in entries]
        comps = [str((e.record or {}).get("completion") or "") for e in entries]
        scored = self.detectors.score_batch(convs, comps)
        clusters = self.reference.clusters([prompt_of(e.record or {}) for e in entries])
        return (
            {e.entry_id: s for e, s in zip(entries, scored, strict=True)},
            {e.entry_id: int(c) for e, c in zip(entries, clusters, strict=True)},
        )

    def _export(
        self, entries: Sequence[Entry], signals: Mapping[str, dict[str, Signal]], new: list[str]
    ) -> None:
        fresh = set(new)
        for e in entries:
            if e.interaction_id not in fresh or e.record is None:
                continue
            variant = str((e.record.get("metadata") or {}).get("variant") or "control")
            _seen_counter.add(1, {"variant": variant})
            for name, s in signals[e.entry_id].items():
                if s.flagged:
                    _flag_counter.add(1, {"detector": name, "variant": variant})
