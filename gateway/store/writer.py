"""The Redis store: one ``redis.asyncio`` connection pool per process, the buffered audit trail of
interactions, retention that never drops an unacknowledged entry, and the embedded server default.

Server: ``store.redis_url`` (or ``ROLLGUARD_REDIS_URL``) names one. When unset, the embedded Valkey
(``gateway.store.embedded.EmbeddedValkey``) is started under ``store.data_dir``.

Audit trail (``rollguard:interactions``): ``append_interaction`` only serialises the record and queues
it in memory -- no round trip on the request path. A background task writes the queue with one pipeline
of XADDs every ``flush_interval_ms`` ms (sooner once ``batch_size`` records wait). Each entry has the
fields ``record`` (``orjson`` JSON of ``Interaction.to_record()``) plus ``id``, ``tenant``, ``model``,
``variant`` and ``verdict`` for cheap filtering. Delivery is at least once: a pipeline cut by a
connection failure is retried whole, so a consumer may see an interaction twice (dedupe by ``id``).

Nothing lost (issue 10): admission reserves each record's place (``reserve()``, refused with 503
``store_unavailable`` and ``Retry-After`` when there is no room), so an accepted record is never
dropped. While Redis cannot be written the writer *spools*: the queue and every later record go to
an append-only local file before the response completes (``gateway.store.spool``: the fsync policy
is documented there), and the files are written back in order when Redis answers again, before
anything newer. ``start()`` with Redis unreachable starts spooling instead of failing (the gateway
serves, degraded). On ``aclose()`` the queue is flushed; whatever cannot be written is spilled to
``<data_dir>/spill/*.jsonl`` (``gateway.store.spill``) and written back on recovery.

Errors: redis exceptions are translated to ``rollguard.errors.StoreError`` subclasses at this boundary
(``start``, ``ensure_group``, ``trim_stream``; ``gateway.store.errors``); ``ping`` answers False instead
of raising; the background tasks log and retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store import spill, spool
from gateway.store.admission import Reservation
from gateway.store.embedded import EmbeddedValkey
from gateway.store.errors import redact_url, redis_errors
from gateway.store.tenant_retention import TenantRetention
from gateway.store.upkeep import StreamUpkeep
from rollguard.errors import StoreError, StoreFull, StoreTimeout, StoreUnavailable
from rollguard.settings import StoreSettings

log = logging.getLogger("rollguard.store")

Fields = dict[str, str]

_BACKOFF_MAX_S = 5.0


class Store(StreamUpkeep):
    """The process's Redis store. Create, ``await start()`` in the app lifespan, ``await aclose()``
    at shutdown.

    ``batch_size``: records per pipeline (a flush is also triggered when that many wait; 200 records
    keep one pipeline's event-loop time to a few ms);
    ``retention_check_s``: seconds between retention trims of the interactions stream (0 = never);
    ``close_timeout_s``: how long ``aclose`` keeps retrying the final flush before spilling to disk;
    ``write_timeout_s``: a pipeline that takes longer counts as a failed write (Redis hung: spool);
    ``tenant_retention``: per-tenant retention (``gateway.store.tenant_retention``).
    """

    def __init__(
        self,
        settings: StoreSettings,
        *,
        batch_size: int = 200,
        retention_check_s: float = 60.0,
        close_timeout_s: float = 5.0,
        write_timeout_s: float = 5.0,
        tenant_retention: TenantRetention | None = None,
    ) -> None:
        self.settings = settings
        self.tenant_retention = tenant_retention or TenantRetention()
        self.stream = settings.interactions_stream
        self.batch_size = batch_size
        self.retention_check_s = retention_check_s
        self.close_timeout_s = close_timeout_s
        self.write_timeout_s = write_timeout_s
        self.embedded: EmbeddedValkey | None = None
        self.url: str | None = settings.redis_url
        self._redis: aioredis.Redis | None = None
        self._buffer: deque[Fields] = deque()
        self._spool = spool.Spool(spill.spill_dir(settings.data_dir))
        self._spooling = False
        self._spool_broken = False
        self._reserved = 0
        self._nonempty = asyncio.Event()
        self._full = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._failing = False
        self._closed = False
        self.appended = 0
        self.written = 0
        self.flush_errors = 0
        self.dropped = 0
        self.spilled = 0
        self.spooled = 0
        self.quarantined = 0
        self.restored = 0
        self.trimmed = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (starting the embedded server when no URL is configured), write back any spilled
        or spooled records, and start the flusher and retention tasks. A configured server that
        does not answer (refused, reset, timed out) is not fatal: the store starts *spooling*
        (``degraded``) and writes back once the server answers. Raises ``StoreError`` when the
        embedded server cannot start or the spilled records cannot be written back (a server
        that answers with an error); a start that fails after it started the embedded server
        stops that server again (no orphan under PID 1)."""
        if self._redis is not None:
            return
        self._closed = False
        if self.url is None:
            self.embedded = EmbeddedValkey(self.settings.data_dir)
            self.url = await asyncio.to_thread(self.embedded.acquire)
        try:
            self._redis = aioredis.Redis.from_url(
                self.url, decode_responses=True, health_check_interval=30, socket_connect_timeout=2.0
            )
            self._spool.adopt_orphans()
            try:
                with redis_errors(f"Redis at {redact_url(self.url)} does not answer", detail=True):
                    await self._redis.ping()
            except (StoreUnavailable, StoreTimeout) as exc:
                log.error("store: %s; serving degraded, spooling audit records to disk", exc)
                self._spooling = True
            else:
                await self._restore_spill()
        except BaseException:
            await self._abort_start()
            raise
        self._tasks = [asyncio.create_task(self._flush_loop(), name="rollguard-store-flush")]
        if self.retention_check_s > 0 and (self.settings.retention_ms > 0 or self.tenant_retention):
            self._tasks.append(asyncio.create_task(self._retention_loop(), name="rollguard-store-retention"))

    async def _abort_start(self) -> None:
        """Undo a ``start()`` that failed part-way: close the pool and stop an embedded server this
        process started (nothing was buffered yet, so nothing is flushed)."""
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.aclose()
            self._redis = None
        await self._release_embedded()

    async def _release_embedded(self) -> None:
        """Stop the embedded server if this process started it (``EmbeddedValkey.release`` is a
        no-op otherwise and when repeated)."""
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.release)

    async def aclose(self) -> None:
        """Stop the background tasks, flush the queue (retrying up to ``close_timeout_s``; not
        while spooling), spill what is left to ``<data_dir>/spill/``, seal the spool file, close
        the pool and stop an embedded server this process started. Idempotent; safe after a
        ``start()`` that failed or never ran."""
        if self._redis is None:
            await self._release_embedded()
            return
        async with self._flush_lock:  # never cancel the flusher in the middle of a pipeline
            for task in self._tasks:
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        deadline = time.monotonic() + (0.0 if self._spooling else self.close_timeout_s)
        delay = 0.05
        while self._buffer and not self._spooling:
            try:
                await self._flush_batch()
            except (RedisError, TimeoutError):
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        if self._buffer:
            self._spill()
        self._spool.close()
        self._closed = True
        await self._redis.aclose()
        self._redis = None
        await self._release_embedded()

    @property
    def redis(self) -> aioredis.Redis:
        """The shared ``redis.asyncio`` client (one pool; ``decode_responses=True``: str, not bytes).
        Raises ``StoreError`` before ``start()``."""
        if self._redis is None:
            raise StoreError("the store is not started")
        return self._redis

    async def ping(self) -> bool:
        """True when the server answers PING (health checks; never raises)."""
        if self._redis is None:
            return False
        try:
            return bool(await self._redis.ping())
        except RedisError:
            return False

    @property
    def degraded(self) -> bool:
        """True while records go to the spool (the store cannot be written, or the spool is being
        written back): the route writes a record before its response then."""
        return self._spooling

    # -- admission -----------------------------------------------------------------------------

    def room(self) -> int:
        """Records that can still be admitted: the spool's room while spooling to a writable
        disk, else the memory queue's (``max_buffer``); reserved places count as taken."""
        if self._spooling and not self._spool_broken:
            return self.settings.max_spool_records - self._spool.records - self._reserved
        return self.settings.max_buffer - len(self._buffer) - self._reserved

    def reserve(self) -> Reservation:
        """Reserve one record's place at admission, before anything is accepted. Raises
        ``StoreFull`` (503 ``store_unavailable``, ``Retry-After``) when there is no room, so an
        accepted interaction is never dropped (issue 10: 270 in flight once overfilled 200)."""
        if self.room() <= 0:
            raise StoreFull(
                "the audit store is unavailable and its buffer is full; retry shortly", retry_after=1.0
            )
        self._reserved += 1
        return Reservation(self._unreserve)

    def _unreserve(self) -> None:
        self._reserved -= 1

    def has_capacity(self) -> bool:
        """True while ``reserve()`` would succeed (readiness reports it)."""
        return self.room() > 0

    # -- audit trail (hot path) ---------------------------------------------------------------

    def append_interaction(self, record: Mapping[str, Any]) -> None:
        """Queue one ``Interaction.to_record()`` for the interactions stream. No network I/O:
        serialises the record (a snapshot: later changes to ``record`` are not written) and queues
        it in memory, or, while spooling, writes it to the spool file (one ``write(2)``). Never
        drops a record (admission reserved its place); call from the event loop's thread. After
        ``aclose()`` the record goes straight to a spill file. Raises ``StoreError`` for a record
        that cannot be serialised."""
        try:
            payload = orjson.dumps(record, default=str).decode()
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise StoreError(f"interaction record is not serialisable: {exc}") from exc
        meta = record.get("metadata")
        variant = meta.get("variant") if isinstance(meta, Mapping) else None
        fields = {
            "record": payload,
            "id": str(record.get("id") or ""),
            "tenant": str(record.get("tenant") or ""),
            "model": str(record.get("model") or ""),
            "variant": str(variant or ""),
            "verdict": str(record.get("verdict") or ""),
        }
        self.appended += 1
        if self._spooling and not self._spool_broken and not self._closed:
            try:
                return self._spool_one(fields)
            except OSError as exc:
                self._spool_failed(exc)
        self._buffer.append(fields)
        if self._closed:  # a straggler after aclose(): straight to the spill file
            self._spill()
            return
        if len(self._buffer) > self.settings.max_buffer:
            log.warning("store: %d records queued in memory (over max_buffer)", len(self._buffer))
        if not self._nonempty.is_set():
            self._nonempty.set()
        if len(self._buffer) >= self.batch_size:
            self._full.set()

    def _spool_one(self, fields: Fields) -> None:
        self._spool.append(fields)
        self.spooled += 1

    def _spool_failed(self, exc: OSError) -> None:
        log.error("store: cannot write the spool (%s); keeping records in memory", exc)
        self._spool_broken = True

    @property
    def buffered(self) -> int:
        """Records waiting in memory."""
        return len(self._buffer)

    def spool_state(self) -> dict[str, Any]:
        """What readiness reports: ``spooling`` (bool), ``records`` (spooled by this process, not
        yet written back), ``files`` and ``bytes`` waiting in the spool directory, ``reserved``
        (admitted requests in flight), ``room`` (records still admissible)."""
        return {
            "spooling": self._spooling,
            "records": self._spool.records,
            "files": len(self._spool.pending_files()),
            "bytes": self._spool.pending_bytes(),
            "reserved": self._reserved,
            "room": self.room(),
        }

    def stats(self) -> dict[str, int]:
        """Counters for metrics: ``appended``, ``written``, ``buffered``, ``flush_errors``, ``dropped``,
        ``spilled``, ``spooled``, ``quarantined`` (unreadable spill lines kept aside), ``restored``,
        ``trimmed``."""
        return {
            "appended": self.appended,
            "written": self.written,
            "buffered": len(self._buffer),
            "flush_errors": self.flush_errors,
            "dropped": self.dropped,
            "spilled": self.spilled,
            "spooled": self.spooled,
            "quarantined": self.quarantined,
            "restored": self.restored,
            "trimmed": self.trimmed,
        }

    async def flush(self) -> int:
        """Write everything queued now; returns the number of records written. Raises ``StoreError``
        (the records stay queued)."""
        total = 0
        while self._buffer:
            with redis_errors("cannot write the audit queue", detail=True):
                total += await self._flush_batch()
        return total

    async def _flush_batch(self) -> int:
        """Write the oldest ``batch_size`` queued records with one pipeline, then dequeue them. One
        flush at a time (``flush()``, the flusher and ``aclose`` share a lock): a batch is never sent
        twice by two concurrent flushes. Raises ``RedisError`` or ``TimeoutError``."""
        async with self._flush_lock:
            batch = list(islice(self._buffer, self.batch_size))
            if not batch:
                return 0
            await self._xadd_all(batch)
            for _ in batch:
                self._buffer.popleft()
            self.written += len(batch)
            return len(batch)

    async def _xadd_all(self, rows: list[Any]) -> None:
        """XADD ``rows`` in one pipeline, within ``write_timeout_s``."""
        async with asyncio.timeout(self.write_timeout_s), self.redis.pipeline(transaction=False) as pipe:
            for fields in rows:
                pipe.xadd(self.stream, fields)
            await pipe.execute()

    async def _flush_loop(self) -> None:
        """Idle (no wakeups) while the queue is empty; once a record arrives, linger up to
        ``flush_interval_ms`` (or until ``batch_size`` records wait), then write everything. On an
        error: move the queue to the spool and spool until Redis answers (``_spool_until_back``)."""
        interval = self.settings.flush_interval_ms / 1000
        while True:
            if self._spooling:
                await self._spool_until_back()
                continue
            await self._nonempty.wait()
            if len(self._buffer) < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), timeout=interval)
            self._full.clear()
            try:
                while self._buffer:
                    await self._flush_batch()
                self._nonempty.clear()  # no await since the queue was seen empty
            except (RedisError, TimeoutError) as exc:
                self.flush_errors += 1
                log.error(
                    "store: cannot write the audit queue (%s: %s); spooling %d queued records to disk",
                    type(exc).__name__,
                    exc,
                    len(self._buffer),
                )
                self._spooling = True
                if isinstance(exc, RedisError):
                    await self._maybe_take_over(exc)

    async def _spool_until_back(self) -> None:
        """While spooling: move the memory queue to the spool, fsync it every ``spool_fsync_ms``,
        PING with exponential backoff (up to 5 s) and, once Redis answers, write the spool back
        (``_write_back``)."""
        fsync_s = self.settings.spool_fsync_ms / 1000
        delay, next_ping = 0.05, 0.0
        while self._spooling:
            self._drain_to_spool()
            await asyncio.to_thread(self._spool.sync)
            now = time.monotonic()
            if now >= next_ping:
                try:
                    async with asyncio.timeout(self.write_timeout_s):
                        await self.redis.ping()
                except (RedisError, TimeoutError) as exc:
                    if isinstance(exc, RedisError):
                        await self._maybe_take_over(exc)
                    next_ping, delay = now + delay, min(delay * 2, _BACKOFF_MAX_S)
                else:
                    if await self._write_back():
                        log.warning("store: Redis reachable again; spooled audit records written back")
                        return
                    next_ping, delay = now + delay, min(delay * 2, _BACKOFF_MAX_S)
            await asyncio.sleep(fsync_s)

    def _drain_to_spool(self) -> None:
        """Move the memory queue to the spool (one write), unless the disk failed before: a
        broken spool is tried again each round."""
        if not self._buffer:
            return
        try:
            self.spooled += self._spool.extend(self._buffer)
        except OSError as exc:
            self._spool_failed(exc)
            return
        self._spool_broken = False
        self._buffer.clear()
        self._nonempty.clear()

    async def _write_back(self) -> bool:
        """Write every spool and spill file back, oldest first, then the memory queue, and leave
        spooling. Records arriving meanwhile go to a new spool file, written back in the next
        round; spooling ends only when a round found nothing new (no await between that check and
        the switch). Returns False when Redis failed again (files given back, still spooling)."""
        while True:
            self._spool.adopt_orphans()
            self._spool.seal()
            try:
                await self._restore_spill()
                while self._buffer:  # kept in memory only when the spool could not be written
                    await self._flush_batch()
            except (StoreError, RedisError, TimeoutError) as exc:
                self.flush_errors += 1
                log.warning("store: writing the spool back failed (%s); still spooling", exc)
                return False
            if self._spool.active is None and not self._buffer:
                self._spooling = False
                self._spool_broken = False
                self._spool.records = 0
                return True

    async def _maybe_take_over(self, exc: RedisError) -> None:
        """Embedded mode: the server's owner stopped it -> start a successor on the same files."""
        if self.embedded is None or not isinstance(exc, RedisConnectionError):
            return
        try:
            url = await asyncio.to_thread(self.embedded.acquire)
        except StoreError as err:
            log.warning("store: embedded server takeover failed: %s", err)
            return
        if url != self.url and self._redis is not None:
            log.warning("store: embedded server now on %s (was %s)", url, self.url)
            old, self.url = self._redis, url
            self._redis = aioredis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
            await old.aclose()

    # -- spill ---------------------------------------------------------------------------------

    def _spill(self) -> None:
        """Move the whole queue to a spill file (``gateway.store.spill``)."""
        count = len(self._buffer)
        if spool.spill_queue(self.settings.data_dir, self._buffer):
            self.spilled += count
        else:
            self.dropped += count
        self._buffer.clear()

    async def _restore_spill(self) -> None:
        """Write every sealed spill/spool file back to the stream, oldest first
        (``gateway.store.spool.write_back``). Raises ``StoreError`` (the file is given back)."""

        async def write(rows: list[dict[Any, Any]], path: Path) -> None:
            with redis_errors(f"cannot restore spilled interactions from {path}", detail=True):
                try:
                    await self._xadd_all(rows)
                except TimeoutError as exc:
                    raise RedisTimeoutError("write timed out") from exc

        async for written, corrupt in spool.write_back(self._spool.directory, write, self.stream):
            self.restored += written
            self.quarantined += corrupt
            self._spool.records = max(0, self._spool.records - written)
