"""Gateway overhead benchmark: what rollguard adds on top of a direct call to the upstream.

Usage (from the repository root)::

    .venv/bin/python bench/overhead.py [--duration 5] [--warmup 1] [--loadgen auto|wrk|aiohttp]

Setup, all on this machine and in separate processes:

* the upstream: the local demo upstream stub (``python -m gateway.demo.upstream --port N``),
  answering instantly; streamed replies have 16 content chunks;
* the gateway: one uvicorn worker (``uvicorn gateway.app:create_app --factory --workers 1``), started
  twice: with ``policies: []`` (policies off) and with the default policy set (policies on), both
  pointing at the same stub; the audit store is the embedded Valkey in a temporary directory;
* the load generator: ``wrk`` (C, epoll; one thread; a Lua script POSTs the JSON body and prints
  the latency percentiles as JSON) when installed (Debian package ``wrk``), else a Python aiohttp
  client in its own process. wrk costs far less CPU per request than any Python client, which matters
  because load generator, gateway and stub share the same cores; the report names which was used.

Cells: mode (direct, policies off, policies on) x streaming (no, yes) x concurrency (1, 16),
``--duration`` seconds each after ``--warmup`` seconds of unrecorded load. Latency is request start
to the last byte of the response (the whole stream for streaming requests), closed loop.

Outputs a table on stdout and writes ``bench/results/overhead.json`` and ``bench/results/overhead.md``
(the table for the README). Targets from the issue: policies on, one worker, concurrency 16:
>= 500 req/s non-streaming and >= 175 req/s streaming; added p50 <= 2 ms at concurrency 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PYTHON = sys.executable

PROMPT = (
    "I'm planning a three-day trip to Lisbon in early October with my partner. We enjoy food markets, "
    "architecture and short hikes, but we'd rather avoid the most touristy restaurants. Could you "
    "suggest a rough plan for each day, including one day trip outside the city, and tell us which "
    "neighbourhoods are best to stay in?"
)
"""A realistic benign chat request (~330 characters) that no default policy should touch."""

MODEL = "bench"
"""The alias the gateway exposes for the stub in this benchmark."""

STUB_MODEL = "bench"
"""The stub model called: a fixed 512-character reply, streamed as 16 content chunks."""

TARGETS = {"rps_nonstream_c16": 500.0, "rps_stream_c16": 175.0, "added_p50_ms_c1": 2.0}


@dataclass
class Cell:
    mode: str
    stream: bool
    concurrency: int
    requests: int
    errors: int
    duration_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float | None = None
    upstream_cpu_ms: float | None = None
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    rps_ratio: float | None = None


# --- processes ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc/<pid>/stat`` fields 14
    and 15, in clock ticks); ``None`` where ``/proc`` is not available."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(
    args: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in its own session; on exit SIGTERM it (then SIGKILL after 10 s)."""
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log and not isinstance(out, int):
            out.close()


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``url`` until it answers 200 (the demo's ``wait_ready``); raises ``StartupError`` (a
    ``RuntimeError``) with the log tail when the process dies or time runs out."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from gateway.demo.run import wait_ready

    wait_ready(url, proc, log)


def body(stream: bool, model: str) -> bytes:
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": stream}
    ).encode()


def probe(url: str, stream: bool, model: str) -> dict[str, str]:
    """One request before a cell: it must answer 200; returns the rollguard response headers."""
    req = urllib.request.Request(  # noqa: S310 (loopback URL we built)
        url, data=body(stream, model), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
        payload = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"probe {url} -> HTTP {resp.status}")
        if stream and b"[DONE]" not in payload:
            raise RuntimeError(f"probe {url}: stream did not end with [DONE]")
        return {k.lower(): v for k, v in resp.headers.items() if k.lower().startswith("x-rollguard")}


# --- load generators ---------------------------------------------------------------------------

WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%BODY%]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(url: str, payload: bytes, concurrency: int, duration_s: float, workdir: Path) -> dict[str, float]:
    """Closed-loop load with wrk (1 thread, ``concurrency`` connections). Returns requests,
    errors, duration_s, p50_ms, p99_ms."""
    script = workdir / "post.lua"
    script.write_text(WRK_LUA.replace("%BODY%", payload.decode()), encoding="utf-8")
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration_s + 60,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    return {
        "requests": raw["requests"],
        "errors": raw["errors"],
        "duration_s": raw["duration_us"] / 1e6,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
    }


async def _aiohttp_load(url: str, payload: bytes, concurrency: int, duration_s: float) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        deadline = start + duration_s

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=payload, headers=headers) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))]

    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "duration_s": elapsed,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
    }


def run_aiohttp(
    url: str, payload: bytes, concurrency: int, duration_s: float, workdir: Path
) -> dict[str, float]:
    """The fallback load generator: this script's ``loadgen`` subcommand in a separate process."""
    spec = workdir / "body.json"
    spec.write_bytes(payload)
    out = subprocess.run(
        [
            PYTHON,
            __file__,
            "loadgen",
            "--url",
            url,
            "--body",
            str(spec),
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration_s),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration_s + 60,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


# --- the benchmark -----------------------------------------------------------------------------


def gateway_config(path: Path, stub_url: str, policies: list[dict[str, Any]] | None, data_dir: Path) -> Path:
    """Write a gateway config: one alias ``bench`` -> the stub; ``policies`` as given (``None``:
    no ``policies`` key, i.e. the default policy set); the audit store's embedded Valkey under
    ``data_dir``."""
    config: dict[str, Any] = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{STUB_MODEL}",
                    "api_base": stub_url + "/v1",
                    "api_key": "bench",
                },
            }
        ],
        "router_settings": {"num_retries": 0},
        "gateway": {"log_level": "warning"},
        "store": {"data_dir": str(data_dir)},
    }
    if policies is not None:
        config["policies"] = policies
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is valid YAML
    return path


def measure(
    mode: str,
    url: str,
    model: str,
    args: argparse.Namespace,
    workdir: Path,
    cells: list[Cell],
    server_pid: int,
    upstream_pid: int,
    concurrencies: tuple[int, ...] = (1, 16),
) -> None:
    """Run the four cells of one mode. CPU per request (ms) is the CPU time the server process
    (the gateway, or the stub for ``direct``) and the stub used during the measured seconds divided
    by the requests served: unlike wall-clock figures it hardly moves when other work shares the
    machine."""
    for stream in (False, True):
        headers = probe(url, stream, model)
        if mode != "direct" and headers.get("x-rollguard-verdict", "allow") != "allow":
            raise RuntimeError(f"the bench prompt is not allowed by the gateway ({mode}): {headers}")
        for concurrency in concurrencies:
            payload = body(stream, model)
            if args.warmup > 0:
                args.loadgen_fn(url, payload, concurrency, args.warmup, workdir)
            cpu0 = cpu_seconds(server_pid), cpu_seconds(upstream_pid)
            r = args.loadgen_fn(url, payload, concurrency, args.duration, workdir)
            cpu1 = cpu_seconds(server_pid), cpu_seconds(upstream_pid)
            ok = max(0, int(r["requests"]) - int(r["errors"]))

            def per_request(a: float | None, b: float | None, served: int = ok) -> float | None:
                return (
                    round((b - a) * 1000 / served, 3) if a is not None and b is not None and served else None
                )

            cell = Cell(
                mode=mode,
                stream=stream,
                concurrency=concurrency,
                requests=int(r["requests"]),
                errors=int(r["errors"]),
                duration_s=round(r["duration_s"], 3),
                rps=round(ok / r["duration_s"], 1),
                p50_ms=round(r["p50_ms"], 3),
                p99_ms=round(r["p99_ms"], 3),
                server_cpu_ms=per_request(cpu0[0], cpu1[0]),
                upstream_cpu_ms=per_request(cpu0[1], cpu1[1]) if mode != "direct" else None,
            )
            cells.append(cell)
            print(
                f"  {mode:22s} stream={stream!s:5s} c={concurrency:<2d} {cell.rps:8.1f} req/s "
                f"p50 {cell.p50_ms:7.2f} ms p99 {cell.p99_ms:7.2f} ms "
                f"server CPU {cell.server_cpu_ms} ms/req errors {cell.errors}",
                flush=True,
            )


def compare(cells: list[Cell]) -> None:
    """Fill added p50/p99 (ms) and the throughput ratio against the direct cell of the same shape."""
    direct = {(c.stream, c.concurrency): c for c in cells if c.mode == "direct"}
    for c in cells:
        d = direct.get((c.stream, c.concurrency))
        if d is None or c.mode == "direct":
            continue
        c.added_p50_ms = round(c.p50_ms - d.p50_ms, 3)
        c.added_p99_ms = round(c.p99_ms - d.p99_ms, 3)
        c.rps_ratio = round(c.rps / d.rps, 3) if d.rps else None


def markdown(cells: list[Cell], meta: dict[str, Any]) -> str:
    lines = [
        f"Gateway overhead, {meta['cpus']} CPU(s), one uvicorn worker, load generator `{meta['loadgen']}`, "
        f"{meta['duration_s']:g} s per cell (`bench/overhead.py`, {meta['date']}).",
        "",
        "| mode | stream | concurrency | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms "
        "| req/s vs direct | server CPU ms/request |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    for c in cells:
        lines.append(
            f"| {c.mode} | {'yes' if c.stream else 'no'} | {c.concurrency} | {c.rps:.0f} | {c.p50_ms:.2f} | "
            f"{c.p99_ms:.2f} | {f(c.added_p50_ms)} | {f(c.added_p99_ms)} | {f(c.rps_ratio)} | "
            f"{f(c.server_cpu_ms)} |"
        )
    lines += [
        "",
        "Server CPU ms/request: CPU time of the gateway process (of the stub for `direct`) per request "
        "served; it hardly depends on other load, unlike the wall-clock columns. "
        f"Load average before / after: {meta['loadavg_before']} / {meta['loadavg_after']}.",
        "",
        "Targets (policies on, one worker): "
        + ", ".join(f"{t['name']} {t['value']} ({'met' if t['met'] else 'not met'})" for t in meta["targets"])
        + ".",
    ]
    return "\n".join(lines) + "\n"


def targets(cells: list[Cell]) -> list[dict[str, Any]]:
    on = {(c.stream, c.concurrency): c for c in cells if c.mode == "policies_on"}
    out = []
    if (False, 16) in on:
        v = on[(False, 16)].rps
        out.append(
            {"name": "req/s non-streaming c=16 >= 500", "value": v, "met": v >= TARGETS["rps_nonstream_c16"]}
        )
    if (True, 16) in on:
        v = on[(True, 16)].rps
        out.append({"name": "req/s streaming c=16 >= 175", "value": v, "met": v >= TARGETS["rps_stream_c16"]})
    added = on[(False, 1)].added_p50_ms if (False, 1) in on else None
    if added is not None:
        out.append(
            {"name": "added p50 c=1 <= 2 ms", "value": added, "met": added <= TARGETS["added_p50_ms_c1"]}
        )
    return out


def print_table(cells: list[Cell]) -> None:
    head = (
        f"{'mode':22s} {'stream':6s} {'conc':>4s} {'req/s':>8s} {'p50':>8s} {'p99':>8s} "
        f"{'+p50':>7s} {'+p99':>7s} {'ratio':>6s} {'cpu/req':>8s}"
    )
    print(head)
    print("-" * len(head))
    for c in cells:

        def f(x: float | None, w: int) -> str:
            return f"{'-':>{w}s}" if x is None else f"{x:{w}.2f}"

        print(
            f"{c.mode:22s} {'yes' if c.stream else 'no':6s} {c.concurrency:4d} {c.rps:8.1f} {c.p50_ms:8.2f} "
            f"{c.p99_ms:8.2f} {f(c.added_p50_ms, 7)} {f(c.added_p99_ms, 7)} {f(c.rps_ratio, 6)} "
            f"{f(c.server_cpu_ms, 8)}"
        )


def run(args: argparse.Namespace) -> int:
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk"))
    if args.loadgen == "wrk" and not shutil.which("wrk"):
        print("wrk not found (apt-get install wrk), use --loadgen aiohttp", file=sys.stderr)
        return 2
    args.loadgen_fn = run_wrk if use_wrk else run_aiohttp
    loadgen = "wrk 1 thread" if use_wrk else "aiohttp (separate process)"
    cells: list[Cell] = []
    failures: list[str] = []
    load_before = [round(x, 2) for x in os.getloadavg()]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="rollguard-bench-") as tmp:
        work = Path(tmp)
        stub_port = free_port()
        stub_url = f"http://127.0.0.1:{stub_port}"
        stub_log = work / "stub.log"
        print(
            f"load generator: {loadgen}; {args.duration:g} s per cell; load average {load_before}", flush=True
        )
        stub_cmd = [PYTHON, "-m", "gateway.demo.upstream", "--port", str(stub_port), "--no-preload"]
        with process(stub_cmd, env, stub_log) as stub:
            wait_http(f"{stub_url}/v1/models", stub, stub_log)
            measure(
                "direct", f"{stub_url}/v1/chat/completions", STUB_MODEL, args, work, cells, stub.pid, stub.pid
            )
            modes: list[tuple[str, list[dict[str, Any]] | None, tuple[int, ...]]] = [
                ("policies_off", [], (1, 16)),
                ("policies_on", None, (1, 16)),
            ]
            if args.per_policy:
                modes += [(f"only_{p['id']}", [p], (1,)) for p in default_policy_specs()]
            for mode, policies, concurrencies in modes:
                cfg = gateway_config(work / f"{mode}.yaml", stub_url, policies, work / f"var-{mode}")
                port = free_port()
                log = work / f"{mode}.log"
                genv = {**env, "ROLLGUARD_CONFIG": str(cfg)}
                with process(gateway_command(port), genv, log) as gw:
                    try:
                        wait_http(f"http://127.0.0.1:{port}/readyz", gw, log)
                        url = f"http://127.0.0.1:{port}/v1/chat/completions"
                        measure(mode, url, MODEL, args, work, cells, gw.pid, stub.pid, concurrencies)
                    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                        last = str(exc).strip().splitlines()
                        failures.append(f"{mode}: {last[0]} ... {last[-1]}" if last else mode)
                        print(f"  {mode}: FAILED: {failures[-1]}", flush=True)
    compare(cells)
    meta = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadgen": loadgen,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "prompt_chars": len(PROMPT),
        "stream_chunks": 16,
        "workers": 1,
        "loadavg_before": load_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "failures": failures,
    }
    meta["targets"] = targets(cells)
    for line in failures:
        print(f"FAILED {line}")
    print()
    print_table(cells)
    for t in meta["targets"]:
        print(f"target {t['name']}: {t['value']} -> {'met' if t['met'] else 'NOT met'}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead.json").write_text(
        json.dumps({"meta": meta, "cells": [asdict(c) for c in cells]}, indent=2) + "\n"
    )
    (out / "overhead.md").write_text(markdown(cells, meta))
    print(f"wrote {out / 'overhead.json'} and {out / 'overhead.md'}")
    return 0 if not failures and all(c.errors == 0 for c in cells) else 1


def default_policy_specs() -> list[dict[str, Any]]:
    """The default policy set (``rollguard.settings.default_policies``) as config dicts."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from rollguard.settings import default_policies

    return [p.model_dump(mode="json", exclude_defaults=True) | {"type": p.type} for p in default_policies()]


def gateway_command(port: int) -> list[str]:
    """One uvicorn worker serving the gateway app factory on 127.0.0.1:``port``."""
    return [
        PYTHON, "-m", "uvicorn", "gateway.app:create_app", "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of measured load per cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unrecorded load before a cell")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "aiohttp"), default="auto")
    parser.add_argument("--out", default=str(RESULTS), help="directory for overhead.json / overhead.md")
    parser.add_argument(
        "--per-policy",
        action="store_true",
        help="also run each default policy alone (concurrency 1): attributes the cost per policy",
    )
    lg = sub.add_parser("loadgen", help="(internal) the aiohttp load generator; prints one JSON line")
    lg.add_argument("--url", required=True)
    lg.add_argument("--body", required=True)
    lg.add_argument("--concurrency", type=int, required=True)
    lg.add_argument("--duration", type=float, required=True)
    args = parser.parse_args(argv)
    if args.command == "loadgen":
        payload = Path(args.body).read_bytes()
        print(json.dumps(asyncio.run(_aiohttp_load(args.url, payload, args.concurrency, args.duration))))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
