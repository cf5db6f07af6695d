"""Real servers for tests: the gateway under uvicorn in a background thread (so tests can register
extra policy types and read in-memory spans/metrics of the same process), on a real socket; and
``rollguard serve --workers N`` as a real process tree (``serve_workers``)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadedServer:
    """Run an ASGI app with uvicorn on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("server thread died during startup")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@contextmanager
def serve_app(app: Any) -> Iterator[ThreadedServer]:
    srv = ThreadedServer(app)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class ThreadedLoop:
    """An asyncio loop in a daemon thread, for async servers (the demo upstream)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not up")
        time.sleep(0.05)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``ROLLGUARD_*`` and ``OTEL_*`` (a variable set for one test
    must not configure a child gateway), with ``PYTHONPATH`` at this checkout and ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLLGUARD_", "OTEL_"))}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


@dataclass(slots=True)
class ServeRun:
    """A ``serve`` process tree started by ``serve_workers``: ``output`` is its whole stdout and
    stderr, set once it has ended."""

    port: int
    output: str = ""


@contextmanager
def serve_workers(
    cwd: Path, workers: int = 2, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[ServeRun]:
    """``python -m gateway.cli serve --port P --workers N`` in ``cwd`` (its config found there, or
    none: the demo models), with ``env`` (default ``clean_env()``), up once ``/healthz`` answers
    (within 120 s); terminated (SIGTERM to the parent, which stops its workers) on exit."""
    run = ServeRun(port or free_port())
    args = ["serve", "--port", str(run.port), "--workers", str(workers)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{run.port}/healthz", timeout=120)
        yield run
    finally:
        proc.terminate()
        run.output, _ = proc.communicate(timeout=60)
