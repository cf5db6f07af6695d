"""Lean aiohttp path vs litellm path of ``gateway.upstream.Upstream``, against the stub upstream.

The stub (``python -m gateway.demo.upstream``, fixed 512-character reply, 16 stream chunks) runs in
its own process so that the CPU time measured here is the client side only: the cost of the
upstream boundary itself. For each path and mode (non-streamed, streamed) it runs ``--requests``
calls at concurrency ``--concurrency`` after a warm-up, and prints requests/s and CPU ms per request
(``time.process_time`` of this process / requests).

Run: ``.venv/bin/python bench/upstream_paths.py [--requests 2000] [--concurrency 16]``.
Numbers go to docs/decisions.md ("Upstream: lean aiohttp path vs litellm").
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.upstream import Upstream  # noqa: E402
from rollguard.settings import RollguardSettings  # noqa: E402

BODY: dict[str, Any] = {"model": "bench", "messages": [{"role": "user", "content": "Say something long."}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def wait_up(port: int) -> None:
    for _ in range(200):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("stub did not start")


async def run(up: Upstream, stream: bool, n: int, concurrency: int) -> tuple[float, float]:
    async def one() -> None:
        if stream:
            s = await up.open_stream("bench", {**BODY, "stream": True})
            async with s:
                async for _ in s:
                    pass
        else:
            await up.complete("bench", BODY)

    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            await one()

    for _ in range(50):  # warm-up: connections, lazy imports
        await one()
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return n / wall, cpu * 1000 / n


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    port = free_port()
    stub = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.demo.upstream",
        "--port",
        str(port),
        "--no-preload",
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        await wait_up(port)
        base = f"http://127.0.0.1:{port}/v1"
        print(f"python {sys.version.split()[0]}, {args.requests} requests, concurrency {args.concurrency}")
        print(f"{'path':8} {'mode':7} {'req/s':>8} {'CPU ms/req':>11}")
        for path in ("lean", "litellm"):
            params = {
                "model": "openai/fixed",
                "api_base": base,
                "api_key": "sk-bench",
                "rollguard_path": path,
            }
            up = Upstream(
                RollguardSettings(
                    model_list=[{"model_name": "bench", "litellm_params": params}],
                    router_settings={"num_retries": 0, "timeout": 30},
                )
            )
            try:
                for stream in (False, True):
                    n = args.requests if path == "lean" else max(200, args.requests // 4)
                    rps, cpu_ms = await run(up, stream, n, args.concurrency)
                    mode = "stream" if stream else "plain"
                    print(f"{path:8} {mode:7} {rps:8.0f} {cpu_ms:11.2f}", flush=True)
            finally:
                await up.aclose()
    finally:
        stub.terminate()
        await asyncio.wait_for(stub.wait(), timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
