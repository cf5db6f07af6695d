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

Nothing lost: while Redis is down the queue is kept and retried with exponential backoff (up to 5 s);
``has_capacity()`` turns False at 90 % of ``max_buffer`` so the gateway can refuse new requests with 503
(backpressure at admission, before anything is accepted); a record arriving at a full queue is dropped,
counted (``dropped``) and logged at ERROR. On ``aclose()`` the queue is flushed; whatever cannot be
written is spilled to ``<data_dir>/spill/*.jsonl`` (``gateway.store.spill``) and written back by the
next ``start()``.

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
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from gateway.store import spill, streams
from gateway.store.embedded import EmbeddedValkey
from gateway.store.errors import redis_errors
from rollguard.errors import StoreError
from rollguard.settings import StoreSettings

log = logging.getLogger("rollguard.store")

Fields = dict[str, str]

_BACKOFF_MAX_S = 5.0
_CAPACITY_FRACTION = 0.9


# ---------------------------------------------------------------------------------- store


class Store:
    """The process's Redis store. Create, ``await start()`` in the app lifespan, ``await aclose()``
    at shutdown.

    ``batch_size``: records per pipeline (a flush is also triggered when that many wait; 200 records
    keep one pipeline's event-loop time to a few ms);
    ``retention_check_s``: seconds between retention trims of the interactions stream (0 = never);
    ``close_timeout_s``: how long ``aclose`` keeps retrying the final flush before spilling to disk.
    """

    def __init__(
        self,
        settings: StoreSettings,
        *,
        batch_size: int = 200,
        retention_check_s: float = 60.0,
        close_timeout_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.stream = settings.interactions_stream
        self.batch_size = batch_size
        self.retention_check_s = retention_check_s
        self.close_timeout_s = close_timeout_s
        self.embedded: EmbeddedValkey | None = None
        self.url: str | None = settings.redis_url
        self._redis: aioredis.Redis | None = None
        self._buffer: deque[Fields] = deque()
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
        self.quarantined = 0
        self.restored = 0
        self.trimmed = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (starting the embedded server when no URL is configured), write back any spilled
        records, and start the flusher and retention tasks. Raises ``StoreError`` if the server does
        not answer or the spilled records cannot be written back; a start that fails after it
        started the embedded server stops that server again (no orphan under PID 1)."""
        if self._redis is not None:
            return
        self._closed = False
        if self.url is None:
            self.embedded = EmbeddedValkey(self.settings.data_dir)
            self.url = await asyncio.to_thread(self.embedded.acquire)
        try:
            self._redis = aioredis.Redis.from_url(self.url, decode_responses=True, health_check_interval=30)
            with redis_errors(f"Redis at {_redact(self.url)} does not answer", detail=True):
                await self._redis.ping()
            await self._restore_spill()
        except BaseException:
            await self._abort_start()
            raise
        self._tasks = [asyncio.create_task(self._flush_loop(), name="rollguard-store-flush")]
        if self.retention_check_s > 0 and self.settings.retention_ms > 0:
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
        """Stop the background tasks, flush the queue (retrying up to ``close_timeout_s``), spill what
        is left to ``<data_dir>/spill/``, close the pool and stop an embedded server this process
        started. Idempotent; safe after a ``start()`` that failed or never ran."""
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
        deadline = time.monotonic() + self.close_timeout_s
        delay = 0.05
        while self._buffer:
            try:
                await self._flush_batch()
            except RedisError:
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        if self._buffer:
            self._spill()
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

    # -- audit trail (hot path) ---------------------------------------------------------------

    def append_interaction(self, record: Mapping[str, Any]) -> None:
        """Queue one ``Interaction.to_record()`` for the interactions stream. No I/O: serialises the
        record (a snapshot: later changes to ``record`` are not written) and returns. Call from the
        event loop's thread. After ``aclose()`` the record goes straight to the spill file. When the
        queue holds ``max_buffer`` records the record is dropped, counted and logged at ERROR -- callers
        avoid that with ``has_capacity()``. Raises ``StoreError`` for a
        record that cannot be serialised."""
        try:
            payload = orjson.dumps(record, default=str).decode()
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise StoreError(f"interaction record is not serialisable: {exc}") from exc
        if len(self._buffer) >= self.settings.max_buffer:
            self.dropped += 1
            log.error(
                "store: audit queue full (%d records; Redis down?): interaction %s DROPPED (%d so far)",
                len(self._buffer),
                record.get("id"),
                self.dropped,
            )
            return
        meta = record.get("metadata")
        variant = meta.get("variant") if isinstance(meta, Mapping) else None
        self._buffer.append(
            {
                "record": payload,
                "id": str(record.get("id") or ""),
                "tenant": str(record.get("tenant") or ""),
                "model": str(record.get("model") or ""),
                "variant": str(variant or ""),
                "verdict": str(record.get("verdict") or ""),
            }
        )
        self.appended += 1
        if self._closed:  # a straggler after aclose(): straight to the spill file
            self._spill()
            return
        if not self._nonempty.is_set():
            self._nonempty.set()
        if len(self._buffer) >= self.batch_size:
            self._full.set()

    def has_capacity(self) -> bool:
        """False once the queue holds 90 % of ``max_buffer`` records: refuse new requests (503
        ``store_unavailable``) so that an accepted interaction is never dropped."""
        return len(self._buffer) < self.settings.max_buffer * _CAPACITY_FRACTION

    @property
    def buffered(self) -> int:
        """Records waiting in memory."""
        return len(self._buffer)

    def stats(self) -> dict[str, int]:
        """Counters for metrics: ``appended``, ``written``, ``buffered``, ``flush_errors``, ``dropped``,
        ``spilled``, ``quarantined`` (unreadable spill lines kept aside), ``restored``, ``trimmed``."""
        return {
            "appended": self.appended,
            "written": self.written,
            "buffered": len(self._buffer),
            "flush_errors": self.flush_errors,
            "dropped": self.dropped,
            "spilled": self.spilled,
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
        twice by two concurrent flushes."""
        async with self._flush_lock:
            batch = list(islice(self._buffer, self.batch_size))
            if not batch:
                return 0
            r = self.redis
            async with r.pipeline(transaction=False) as pipe:
                for fields in batch:
                    pipe.xadd(self.stream, fields)  # type: ignore[arg-type]
                await pipe.execute()
            for _ in batch:
                self._buffer.popleft()
            self.written += len(batch)
            return len(batch)

    async def _flush_loop(self) -> None:
        """Idle (no wakeups) while the queue is empty; once a record arrives, linger up to
        ``flush_interval_ms`` (or until ``batch_size`` records wait), then write everything. On an
        error: keep the queue, back off exponentially (up to 5 s) and retry."""
        interval = self.settings.flush_interval_ms / 1000
        delay = interval
        while True:
            await self._nonempty.wait()
            if len(self._buffer) < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), timeout=interval)
            self._full.clear()
            try:
                while self._buffer:
                    await self._flush_batch()
                self._nonempty.clear()  # no await since the queue was seen empty
                if self._failing:
                    self._failing = False
                    log.warning("store: Redis reachable again; audit queue written")
                delay = interval
            except RedisError as exc:
                self.flush_errors += 1
                if not self._failing:
                    self._failing = True
                    log.warning(
                        "store: cannot write the audit queue (%s: %s); keeping %d records queued, retrying",
                        type(exc).__name__,
                        exc,
                        len(self._buffer),
                    )
                await self._maybe_take_over(exc)
                await asyncio.sleep(delay)
                delay = min(max(delay * 2, 0.05), _BACKOFF_MAX_S)

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
        try:
            path = spill.write_spill(spill.spill_dir(self.settings.data_dir), self._buffer)
        except OSError as exc:
            log.error("store: %d interactions LOST: cannot spill to %s: %s", count, exc.filename, exc)
            self.dropped += count
            self._buffer.clear()
            return
        self.spilled += count
        log.error("store: %d interactions spilled to %s (written back at the next start)", count, path)
        self._buffer.clear()

    async def _restore_spill(self) -> None:
        """Write every spill file back to the stream (see ``gateway.store.spill``). Raises
        ``StoreError`` (the file is given back for the next start)."""
        for path, claimed in spill.claim_spill_files(spill.spill_dir(self.settings.data_dir)):
            rows, corrupt = spill.read_spill(claimed)
            if corrupt:
                kept = spill.quarantine(path, corrupt)
                self.quarantined += len(corrupt)
                log.error(
                    "store: %d unreadable line(s) in %s kept in %s (not written to %s)",
                    len(corrupt),
                    path,
                    kept,
                    self.stream,
                )
            try:
                with redis_errors(f"cannot restore spilled interactions from {path}", detail=True):
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for fields in rows:
                            pipe.xadd(self.stream, fields)
                        await pipe.execute()
            except StoreError:
                claimed.rename(path)
                raise
            claimed.unlink()
            self.restored += len(rows)
            log.warning("store: %d spilled interactions from %s written to %s", len(rows), path, self.stream)

    # -- consumer groups and retention ---------------------------------------------------------

    async def ensure_group(self, stream: str, group: str, start_id: str = "0") -> None:
        """``gateway.store.streams.ensure_group`` on this store's client. Raises ``StoreError``."""
        await streams.ensure_group(self.redis, stream, group, start_id)

    async def safe_min_id(self, stream: str, retention_ms: int, now_ms: int | None = None) -> str:
        """``gateway.store.streams.safe_min_id`` on this store's client. Raises ``StoreError``."""
        return await streams.safe_min_id(self.redis, stream, retention_ms, now_ms)

    async def trim_stream(self, stream: str, retention_ms: int, now_ms: int | None = None) -> int:
        """Drop entries older than ``retention_ms`` that every consumer group has acknowledged
        (``gateway.store.streams.trim_stream``). Returns the number of entries removed. Raises
        ``StoreError``."""
        removed = await streams.trim_stream(self.redis, stream, retention_ms, now_ms)
        self.trimmed += removed
        return removed

    async def trim_interactions(self, now_ms: int | None = None) -> int:
        """``trim_stream`` on the interactions stream with ``retention_ms`` from the settings."""
        return await self.trim_stream(self.stream, self.settings.retention_ms, now_ms)

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(self.retention_check_s)
            try:
                removed = await self.trim_interactions()
                if removed:
                    log.info("store: retention trimmed %d entries from %s", removed, self.stream)
            except StoreError as exc:
                log.warning("store: retention trim skipped: %s", exc)


def _redact(url: str) -> str:
    """``url`` without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
