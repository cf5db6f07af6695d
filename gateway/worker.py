"""The detector worker (``rollguard worker``): a member of the consumer group ``detectors`` on
``rollguard:interactions``; N workers share the stream.

For every batch of entries the worker

1. parses each entry's ``record`` field (``Interaction.to_record()`` JSON) and runs every
   per-interaction shortcut detector (in a thread: it is CPU work);
2. in one optimistic Redis transaction (WATCH the state and the seen-set, MULTI/EXEC): loads the
   window-detector state, skips interactions already counted (the seen-set: a sorted set of
   interaction ids scored by the time they were counted, trimmed after ``seen_retention_ms``; so
   a reclaimed entry or a duplicate delivery is never counted twice), feeds the rest to the
   window engine, writes the new state, adds the ids to the seen-set, appends per-interaction
   results to ``rollguard:signals``, the batch's alert lifecycle events (``WindowEngine.drain``) to
   ``rollguard:anomaly_events`` and the anomaly of every newly opened incident to
   ``rollguard:anomalies`` (one entry per incident, not per firing or group: see
   ``detectors.alerts``), and acknowledges the entries. A conflicting writer makes EXEC fail and the
   batch is re-applied on fresh state. Nothing is acknowledged before its results are written.

Crashed workers: every ``claim_idle_ms`` the worker runs XAUTOCLAIM from cursor ``0-0`` and follows
the cursor to the end, taking over entries idle in another consumer's pending list. Entries that
were deleted from the stream meanwhile come back as deleted ids: they are logged, counted
(``deleted``) and acknowledged so they leave the pending list. A record that cannot be parsed is
logged, counted (``bad_records``), written to ``rollguard:signals`` as an error and acknowledged.

State keys: ``rollguard:detectors:state`` (JSON of ``WindowEngine.to_dict()``; reference windows,
CUSUM statistics, comparisons, open incidents of the alert lifecycle), ``rollguard:detectors:seen``
(sorted set of interaction ids). Reference
policy: ``detectors.rolling_reference`` (fixed baseline by default) from config.

Config (``detectors:`` in the YAML): the ``EngineConfig`` fields, plus ``worker:`` with ``group``,
``batch``, ``block_ms``, ``claim_idle_ms``, ``signals_maxlen``, ``seen_retention_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from opentelemetry import metrics
from redis.exceptions import RedisError, ResponseError, WatchError

from detectors.engine import EngineConfig, WindowEngine, observation, prompt_of
from detectors.reference_model import ReferenceModel
from detectors.shortcuts import ShortcutDetectors
from rollguard.errors import StoreError
from rollguard.settings import RollguardSettings
from rollguard.types import Signal

log = logging.getLogger("rollguard.worker")

STATE_KEY = "rollguard:detectors:state"
SEEN_KEY = "rollguard:detectors:seen"
SIGNALS_STREAM = "rollguard:signals"
ANOMALIES_STREAM = "rollguard:anomalies"
ANOMALY_EVENTS_STREAM = "rollguard:anomaly_events"
"""Lifecycle events (``event`` = open / update / resolve, ``id``, ``data`` = JSON of the event)."""

_meter = metrics.get_meter("rollguard.detectors")
_flag_counter = _meter.create_counter(
    "rollguard.detector.flags", unit="1", description="interactions flagged, per detector and variant"
)
_seen_counter = _meter.create_counter(
    "rollguard.detector.interactions", unit="1", description="interactions scored, per variant"
)


@dataclass(slots=True)
class WorkerOptions:
    """Worker knobs (``detectors.worker`` in the config)."""

    group: str = "detectors"
    batch: int = 100
    block_ms: int = 1000
    claim_idle_ms: int = 30_000
    signals_maxlen: int = 100_000
    seen_retention_ms: int = 7 * 24 * 3600 * 1000
    """How long an interaction id stays in the seen-set after it was counted (0 = forever). An
    entry is acknowledged in the same transaction that records its id, so only a duplicate
    delivery (the store's at-least-once retry, seconds later) can arrive after that."""
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
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Entry:
    entry_id: str
    interaction_id: str
    record: dict[str, Any] | None
    error: str | None = None


def _dumps(obj: Any) -> bytes:
    """JSON bytes; numpy scalars (from the detectors' statistics) serialised as numbers."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _without_bundle(event: Mapping[str, Any]) -> dict[str, Any]:
    """A lifecycle event without its anomaly bundle (that goes to the anomalies stream)."""
    return {k: v for k, v in event.items() if k != "anomaly"}


def _parse(entry_id: Any, fields: Mapping[Any, Any]) -> _Entry:
    eid = _s(entry_id)
    f = {_s(k): v for k, v in (fields or {}).items()}
    raw = f.get("record")
    if raw is None:
        return _Entry(eid, _s(f.get("id", eid)), None, "entry has no 'record' field")
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _Entry(eid, _s(f.get("id", eid)), None, f"record is not JSON ({exc.msg})")
    if not isinstance(rec, dict):
        return _Entry(eid, _s(f.get("id", eid)), None, "record is not a JSON object")
    iid = str(rec.get("id") or f.get("id") or eid)
    problem = _shape_problem(rec)
    if problem is not None:
        return _Entry(eid, iid, None, problem)
    return _Entry(eid, iid, rec)


def _shape_problem(rec: Mapping[str, Any]) -> str | None:
    """Why ``rec`` cannot be scored (wrong types in the fields the detectors read), or None."""
    msgs = rec.get("messages")
    if msgs is not None and (not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs)):
        return "record.messages is not a list of message objects"
    if rec.get("completion") is not None and not isinstance(rec["completion"], str):
        return "record.completion is not a string"
    for key in ("metadata", "flags", "usage"):
        if rec.get(key) is not None and not isinstance(rec[key], dict):
            return f"record.{key} is not an object"
    for key in ("decisions", "tool_calls"):
        if rec.get(key) is not None and not isinstance(rec[key], list):
            return f"record.{key} is not a list"
    return None


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
    ) -> None:
        self.r = client
        self.stream = stream
        self.consumer = consumer
        self.engine_config = engine_config
        self.opt = options
        self.detectors = detectors or ShortcutDetectors()
        self.reference = reference or ReferenceModel()
        self.stats = WorkerStats()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def ensure_group(self) -> None:
        try:
            await self.r.xgroup_create(self.stream, self.opt.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StoreError(f"cannot create consumer group: {exc}") from exc

    async def run(self) -> WorkerStats:
        """Process until ``stop()`` (or ``idle_exit_s`` without work). Redis errors are logged and
        retried with backoff."""
        await self.ensure_group()
        last_claim = 0.0
        last_work = time.monotonic()
        backoff = 0.1
        while not self._stop.is_set():
            try:
                did = 0
                now = time.monotonic()
                if now - last_claim >= self.opt.claim_idle_ms / 1000 / 2:
                    last_claim = now
                    did += await self.reclaim()
                resp: Any = await self.r.xreadgroup(
                    self.opt.group,
                    self.consumer,
                    {self.stream: ">"},
                    count=self.opt.batch,
                    block=self.opt.block_ms,
                )
                for _stream, entries in resp or []:
                    await self.process([_parse(eid, f) for eid, f in entries])
                    did += len(entries)
                backoff = 0.1
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

    async def reclaim(self) -> int:
        """XAUTOCLAIM entries idle for ``claim_idle_ms`` from any consumer, following the cursor to
        the end; processes them and acknowledges deleted ones. Returns the number of entries taken."""
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
            cursor = _s(resp[0])
            entries = resp[1] or []
            deleted = [_s(d) for d in (resp[2] if len(resp) > 2 else [])]
            if deleted:
                self.stats.deleted += len(deleted)
                log.warning(
                    "worker %s: %d pending entries were deleted from %s before processing: %s",
                    self.consumer,
                    len(deleted),
                    self.stream,
                    ", ".join(deleted[:20]),
                )
                await self.r.xack(self.stream, self.opt.group, *deleted)
            live = [(eid, f) for eid, f in entries if f is not None]
            if live:
                self.stats.reclaimed += len(live)
                log.info("worker %s: reclaimed %d idle entries", self.consumer, len(live))
                await self.process([_parse(eid, f) for eid, f in live])
                taken += len(live)
            if cursor in ("0-0", "0"):
                return taken

    async def process(self, entries: Sequence[_Entry]) -> None:
        """Score, apply to the window state and acknowledge one batch (see the module docstring)."""
        if not entries:
            return
        entries, signals, clusters = await asyncio.to_thread(self._score_safely, entries)
        good = [e for e in entries if e.record is not None]
        self.stats.batches += 1
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(STATE_KEY, SEEN_KEY)
                    raw = await pipe.get(STATE_KEY)
                    ids = [e.interaction_id for e in entries]
                    seen_scores = await pipe.zmscore(SEEN_KEY, ids)
                    seen = {i for i, s in zip(ids, seen_scores, strict=True) if s is not None}
                    engine = (
                        WindowEngine.from_dict(orjson.loads(raw), self.engine_config)
                        if raw
                        else WindowEngine(self.engine_config)
                    )
                    new_ids: list[str] = []
                    bundles: list[bytes] = []
                    events: list[dict[str, Any]] = []
                    results: list[tuple[str, bytes]] = []
                    for e in entries:
                        if e.interaction_id in seen or e.interaction_id in new_ids:
                            continue
                        new_ids.append(e.interaction_id)
                        if e.record is None:
                            results.append((e.interaction_id, orjson.dumps({"error": e.error})))
                            continue
                        sig = signals[e.entry_id]
                        results.append((e.interaction_id, _dumps({k: s.to_dict() for k, s in sig.items()})))
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
                            continue
                    events = engine.drain()
                    bundles = [_dumps(ev["anomaly"]) for ev in events if ev["event"] == "open"]
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if new_ids:
                        pipe.set(STATE_KEY, _dumps(engine.to_dict()))
                        now_ms = int(time.time() * 1000)
                        pipe.zadd(SEEN_KEY, dict.fromkeys(new_ids, now_ms))
                        if self.opt.seen_retention_ms > 0:
                            pipe.zremrangebyscore(SEEN_KEY, "-inf", now_ms - self.opt.seen_retention_ms)
                    for iid, body in results:
                        pipe.xadd(
                            SIGNALS_STREAM,
                            {"id": iid, "signals": body},
                            maxlen=self.opt.signals_maxlen,
                            approximate=True,
                        )
                    for b in bundles:
                        pipe.xadd(ANOMALIES_STREAM, {"bundle": b})
                    for ev in events:
                        pipe.xadd(
                            ANOMALY_EVENTS_STREAM,
                            {"event": ev["event"], "id": ev["id"], "data": _dumps(_without_bundle(ev))},
                            maxlen=self.opt.signals_maxlen,
                            approximate=True,
                        )
                    pipe.xack(self.stream, self.opt.group, *[e.entry_id for e in entries])
                    await pipe.execute()
                    break
                except WatchError:
                    self.stats.conflicts += 1
                    continue
        dup = len(entries) - len(new_ids)
        bad = sum(1 for e in entries if e.record is None and e.interaction_id in new_ids)
        self.stats.duplicates += dup
        self.stats.bad_records += bad
        self.stats.processed += len(new_ids) - bad
        self.stats.anomalies += len(bundles)
        self.stats.alert_updates += sum(1 for ev in events if ev["event"] == "update")
        self.stats.resolved += sum(1 for ev in events if ev["event"] == "resolve")
        for e in entries:
            if e.record is None and e.interaction_id in new_ids:
                log.error("worker %s: entry %s unusable: %s", self.consumer, e.entry_id, e.error)
        self._export(good, signals, new_ids)
        for b in bundles:
            log.warning("anomaly: %s", b[:300].decode(errors="replace"))
        for ev in events:
            if ev["event"] == "resolve":
                log.info("anomaly %s resolved after %d firings", ev["id"], ev["count"])

    def _score_safely(
        self, entries: Sequence[_Entry]
    ) -> tuple[list[_Entry], dict[str, dict[str, Signal]], dict[str, int]]:
        """Score ``entries`` at once; only when that fails, one by one, turning every record the
        detectors fail on into an error entry (the whole kind of fault: a record no check
        foresaw must not crash the worker on every restart)."""
        good = [e for e in entries if e.record is not None]
        try:
            signals, clusters = self._score(good)
            return list(entries), signals, clusters
        except Exception:
            log.warning("worker %s: batch scoring failed; scoring entries one by one", self.consumer)
        out: list[_Entry] = []
        signals, clusters = {}, {}
        for e in entries:
            if e.record is not None:
                try:
                    s1, c1 = self._score([e])
                    signals.update(s1)
                    clusters.update(c1)
                except Exception as exc:
                    e = _Entry(e.entry_id, e.interaction_id, None, f"detectors failed: {type(exc).__name__}")
            out.append(e)
        return out, signals, clusters

    def _score(self, entries: Sequence[_Entry]) -> tuple[dict[str, dict[str, Signal]], dict[str, int]]:
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
        self, entries: Sequence[_Entry], signals: Mapping[str, dict[str, Signal]], new: list[str]
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


def _options(settings: RollguardSettings) -> tuple[EngineConfig, WorkerOptions]:
    detectors = settings.detectors
    return EngineConfig.from_config(detectors.engine()), WorkerOptions(**detectors.worker_options())


def _redis_url(settings: RollguardSettings) -> tuple[str, Any]:
    """The store URL, and the embedded server this process acquired (to release at exit) or None."""
    if settings.store.redis_url:
        return settings.store.redis_url, None
    from gateway.store import EmbeddedValkey

    embedded = EmbeddedValkey(settings.store.data_dir)
    return embedded.acquire(), embedded


async def run_worker(
    settings: RollguardSettings, consumer_name: str, options: WorkerOptions | None = None
) -> WorkerStats:
    """Run one detector worker until SIGTERM/SIGINT (or ``options.idle_exit_s`` idle seconds).
    ``consumer_name`` must be unique per live worker (e.g. ``hostname-pid``). Returns the counters.
    Raises ``StoreError`` when the consumer group cannot be created."""
    engine_config, opt = _options(settings)
    if options is not None:
        opt = options
    url, embedded = _redis_url(settings)
    client = aioredis.from_url(url)
    worker = DetectorWorker(client, settings.store.interactions_stream, consumer_name, engine_config, opt)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, worker.stop)
    try:
        stats = await worker.run()
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.release)  # stops the server if this process started it
    log.info("worker %s stopped: %s", consumer_name, stats)
    return stats


async def read_detector_summary(client: aioredis.Redis, config: EngineConfig | None = None) -> dict[str, Any]:
    """The current detector state per detector and group, for ``GET /v1/detectors`` (``{}`` before
    the first interaction)."""
    raw = await client.get(STATE_KEY)
    if not raw:
        return {}
    return WindowEngine.from_dict(orjson.loads(raw), config).summary()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway.worker --redis-url URL --consumer NAME [--idle-exit-s S]`` (tests and
    operations; ``rollguard worker`` is the documented entry point). Prints the counters as JSON."""
    ap = argparse.ArgumentParser(prog="rollguard-worker")
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--consumer", required=True)
    ap.add_argument("--idle-exit-s", type=float, default=None)
    ap.add_argument("--claim-idle-ms", type=int, default=30_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--config", default=None, help="YAML config (for detectors: settings)")
    args = ap.parse_args(argv)
    from rollguard.settings import load_settings

    settings = load_settings(args.config)
    settings.store.redis_url = args.redis_url
    opt = _options(settings)[1]
    opt.idle_exit_s = args.idle_exit_s
    opt.claim_idle_ms = args.claim_idle_ms
    opt.batch = args.batch
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stats = asyncio.run(run_worker(settings, args.consumer, opt))
    print(_stats_json(stats), flush=True)
    return 0


def _stats_json(stats: WorkerStats) -> str:
    return orjson.dumps(
        {
            "processed": stats.processed,
            "duplicates": stats.duplicates,
            "reclaimed": stats.reclaimed,
            "deleted": stats.deleted,
            "bad_records": stats.bad_records,
            "anomalies": stats.anomalies,
            "alert_updates": stats.alert_updates,
            "resolved": stats.resolved,
            "conflicts": stats.conflicts,
        }
    ).decode()


if __name__ == "__main__":
    raise SystemExit(main())
