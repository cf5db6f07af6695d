"""The benchmark's load generator: a closed-loop HTTP/1.1 client on uvloop + httptools (the C
parser uvicorn uses), one process, ``concurrency`` keep-alive connections, every request a different
body from ``workload.Workload``.

Why not wrk: wrk's Lua hooks see a response only when it is complete, so it cannot time the first
byte of a stream, and varying multi-turn bodies would mean re-implementing the workload in Lua. This
client costs ~0.1 ms of CPU per request (reported as ``client_cpu_ms`` so a reader can check that the
load generator does not dominate the shared cores).

Latency: request write to the last byte of the response. Time to first byte (``ttfb``): request
write to the first byte of the response *body* (for a stream, the first SSE event; the status line
and headers alone do not count). Non-2xx responses (a guardrail block is a 400) are counted in
``non_2xx`` and kept out of the percentiles; connection failures count in ``errors``.

Run: ``python bench/loadgen.py --url URL --model M [--stream] --concurrency N (--duration S |
--requests N) [--start I] [--turns T]`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools
from workload import DEFAULT_TURNS, Workload


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)
    non_2xx: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class _Conn(asyncio.Protocol):
    """One keep-alive connection; ``exchange`` sends a request and waits for its whole response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[None] | None = None
        self.first_body: float | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection lost"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.done is not None and not self.done.done():
                self.done.set_exception(exc)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        if self.first_body is None:
            self.first_body = time.perf_counter()

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def exchange(self, request: bytes) -> int:
        assert self.transport is not None
        self.first_body = None
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        await self.done
        return int(self.parser.get_status_code())


def _request(host: str, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer bench\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def run_load(
    url: str,
    model: str,
    stream: bool,
    concurrency: int,
    *,
    duration_s: float | None = None,
    requests: int | None = None,
    start: int = 0,
    turns: int = DEFAULT_TURNS,
) -> dict[str, Any]:
    """Closed loop: ``concurrency`` workers, each sending the next body (index ``start``, ``start+1``,
    ...) as soon as its previous response is complete, until ``duration_s`` seconds have passed or
    ``requests`` were sent. Returns counts, percentiles (ms) and the client's own CPU (ms/request)."""
    if duration_s is None and requests is None:
        raise ValueError("give duration_s or requests")
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    workload = Workload(turns)
    loop = asyncio.get_running_loop()
    counter = itertools.count(start)
    tally = Tally()
    sent = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    deadline = t0 + duration_s if duration_s is not None else float("inf")

    async def worker() -> None:
        nonlocal sent
        conn: _Conn | None = None
        while time.perf_counter() < deadline and (requests is None or sent < requests):
            sent += 1
            req = _request(f"{host}:{port}", parts.path, workload.body(next(counter), model, stream))
            try:
                if conn is None or conn.closed:
                    _, conn = await loop.create_connection(_Conn, host, port)
                t = time.perf_counter()
                status = await conn.exchange(req)
                end = time.perf_counter()
            except (OSError, httptools.HttpParserError):
                tally.errors += 1
                conn = None
                await asyncio.sleep(0.01)
                continue
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                tally.latencies.append((end - t) * 1000)
                tally.ttfbs.append(((conn.first_body or end) - t) * 1000)
            else:
                tally.non_2xx += 1
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return summarize(tally, elapsed, cpu, sent)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0-100) of an ascending list; ``None`` when empty."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


def summarize(tally: Tally, elapsed: float, cpu_s: float, sent: int) -> dict[str, Any]:
    lat, ttfb = sorted(tally.latencies), sorted(tally.ttfbs)
    ok = len(lat)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "requests": sent,
        "ok": ok,
        "non_2xx": tally.non_2xx,
        "errors": tally.errors,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "duration_s": round(elapsed, 3),
        "rps": round((ok + tally.non_2xx) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": r(percentile(lat, 50)),
        "p99_ms": r(percentile(lat, 99)),
        "ttfb_p50_ms": r(percentile(ttfb, 50)),
        "ttfb_p99_ms": r(percentile(ttfb, 99)),
        "client_cpu_ms": round(cpu_s * 1000 / sent, 3) if sent else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="closed-loop load generator (prints one JSON line)")
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--duration", type=float, default=None, help="seconds of load")
    p.add_argument("--requests", type=int, default=None, help="stop after this many requests")
    p.add_argument("--start", type=int, default=0, help="index of the first body")
    p.add_argument("--turns", type=int, default=DEFAULT_TURNS)
    a = p.parse_args(argv)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.run
    out = runner(
        run_load(
            a.url,
            a.model,
            a.stream,
            a.concurrency,
            duration_s=a.duration,
            requests=a.requests,
            start=a.start,
            turns=a.turns,
        )
    )
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
