"""Gateway overhead benchmark: what rollguard adds on top of a direct call to the upstream, with
varied real multi-turn traffic.

Usage (from the repository root)::

    .venv/bin/python bench/overhead.py                 # the full grid (~6 min), profile included
    .venv/bin/python bench/overhead.py --quick         # smoke run (~30 s): c=1,16, delay 0, no profile
    .venv/bin/python bench/overhead.py --rss-requests 100000   # adds RSS after 10k and 100k requests

Setup, all on this machine, each in its own process:

* upstreams: ``bench/stub.py`` (the demo upstream stub, a fixed 512-character reply, 16 chunks when
  streamed) once per upstream delay (default 0 and 50 ms before the reply starts);
* the gateway: one uvicorn worker (``uvicorn gateway.app:create_app --factory --workers 1``;
  ``--workers N`` for the scale-out curve, CPU then summed over the worker processes), started
  with ``policies: []`` (``policies_off``) and with the default policy set (``policies_on``); alias
  ``bench-d<delay>`` goes to the stub with that delay; the audit store is the embedded Valkey in a
  temporary directory;
* the load generator: ``bench/loadgen.py`` (uvloop + httptools, closed loop), every request a
  different body from ``bench/workload.py``: a 746-character system prompt, 0-3 earlier turns of
  the same conversation and a new user turn that no earlier request sent (real prompts from the
  shipped data sets), so no cache can hide the cost of a new turn.

Cells: mode (direct, policies_off, policies_on) x upstream delay (0, 50 ms) x streaming (no, yes) x
concurrency (1, 16, 64), ``--duration`` seconds each after ``--warmup`` seconds of unrecorded load.
Metrics per cell: req/s, p50/p99 latency (to the last byte), time to first body byte (streams),
added p50/p99/TTFB against ``direct``, gateway CPU ms per request (``/proc/<pid>/stat``), the load
generator's own CPU ms per request. Then, on the ``policies_on`` gateway: a py-spy profile at
concurrency 16 (non-streaming and streaming) aggregated into CPU per stage (``bench/stages.py``),
and with ``--rss-requests N`` the RSS after 10,000 and after N requests.

Writes ``bench/results/overhead.json`` and ``overhead.md`` (``--tag T``: ``overhead-T.*``). The
must-hold numbers of issue 11 that one run can check are listed under the table.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import stages
from cells import Cell, Plan, compare, fmt, load, markdown_table, measure_cell, measure_mode
from procs import (
    REPO,
    cpu_seconds,
    free_port,
    gateway_command,
    machine,
    probe,
    process,
    rss_mb,
    stub_command,
    wait_http,
)
from workload import Workload

RESULTS = REPO / "bench" / "results"
RSS_FIRST = 10_000
"""Requests after which the first RSS reading is taken (the second after ``--rss-requests``)."""


def gateway_config(
    path: Path, stubs: dict[float, str], policies: list[dict[str, Any]] | None, data_dir: Path
) -> Path:
    """Write a gateway config: alias ``bench-d<delay>`` -> the stub URL with that delay;
    ``policies`` as given (``None``: no ``policies`` key, i.e. the default policy set); the audit
    store's embedded Valkey under ``data_dir``."""
    config: dict[str, Any] = {
        "model_list": [
            {
                "model_name": model_for_gateway(delay),
                "litellm_params": {"model": "openai/bench", "api_base": url + "/v1", "api_key": "bench"},
            }
            for delay, url in stubs.items()
        ],
        "router_settings": {"num_retries": 0},
        "gateway": {"log_level": "warning"},
        "store": {"data_dir": str(data_dir)},
    }
    if policies is not None:
        config["policies"] = policies
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is valid YAML
    return path


def model_for_gateway(delay_ms: float) -> str:
    return f"bench-d{delay_ms:g}"


def profile_stages(
    plan: Plan, url: str, pid: int, work: Path, seconds: float, keep: Path | None = None
) -> list[dict[str, Any]]:
    """py-spy on the gateway while it serves concurrency 16, delay 0 (non-streaming, streaming):
    per stage the share of samples and the CPU ms per request (share x measured CPU/request).
    ``keep``: a directory to copy py-spy's raw (collapsed) stacks to, gzipped (``zcat F |
    flamegraph.pl`` or speedscope read them)."""
    out = []
    for stream in plan.streams:
        raw = work / f"profile-{'stream' if stream else 'json'}.txt"
        try:
            spy = stages.start_record(pid, raw, seconds)
        except FileNotFoundError as exc:
            print(f"  profile skipped: {exc}", flush=True)
            return []
        time.sleep(0.5)  # py-spy attaches
        cpu0 = cpu_seconds(pid)
        r = load(plan, url, model_for_gateway(0.0), stream, 16, duration_s=seconds)
        cpu1 = cpu_seconds(pid)
        _, err = spy.communicate(timeout=seconds + 60)
        served = int(r["ok"]) + int(r["non_2xx"])
        cpu = round((cpu1 - cpu0) * 1000 / served, 3) if cpu0 is not None and cpu1 is not None else None
        if not raw.exists():
            print(f"  profile failed: {err.decode(errors='replace')[-300:]}", flush=True)
            return []
        text = raw.read_text(errors="replace")
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            (keep / f"{raw.name}.gz").write_bytes(gzip.compress(text.encode()))
        counts = stages.aggregate(text)
        rows = stages.breakdown(counts, cpu)
        out.append({"stream": stream, "cpu_ms_per_request": cpu, "requests": served, "stages": rows})
        top = ", ".join(f"{x['stage']} {x['cpu_ms']}" for x in rows if x["samples"])
        print(f"  profile stream={stream}: {cpu} ms/req: {top}", flush=True)
    return out


def rss_run(plan: Plan, url: str, pid: int, total: int, before: int = 0) -> dict[str, Any]:
    """Non-streaming load at concurrency 16 (delay 0) until the gateway has served ``RSS_FIRST``
    requests in this phase, then ``total`` (at ~100-300 req/s here, 100,000 take 5-15 min); RSS
    (MiB) at the start of the phase and at both marks. ``before``: requests the gateway served
    earlier (the cells), recorded as ``requests_before_phase``."""
    out: dict[str, Any] = {"requests_before_phase": before, "rss_start_mb": rss_mb(pid)}
    done = 0
    for mark in sorted({min(RSS_FIRST, total), total}):
        r = load(plan, url, model_for_gateway(0.0), False, 16, requests=mark - done)
        done += int(r["requests"])
        out[f"rss_after_{mark}_mb"] = rss_mb(pid)
        print(f"  RSS after {done} requests: {out[f'rss_after_{mark}_mb']} MiB", flush=True)
    first, last = out.get(f"rss_after_{min(RSS_FIRST, total)}_mb"), out.get(f"rss_after_{total}_mb")
    out["growth"] = round(last / first - 1, 3) if first and last else None
    return out


def run_gateway_mode(
    plan: Plan,
    args: argparse.Namespace,
    mode: str,
    policies: list[dict[str, Any]] | None,
    stubs: dict[float, tuple[str, int]],
    work: Path,
    report: dict[str, Any],
) -> list[Cell]:
    """Start one gateway, check it answers 200 for each delay's alias, measure its cells (then the
    profile and RSS phases for ``policies_on``)."""
    cfg = gateway_config(
        work / f"{mode}.yaml", {d: u for d, (u, _) in stubs.items()}, policies, work / f"var-{mode}"
    )
    port, log = free_port(), work / f"{mode}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "ROLLGUARD_CONFIG": str(cfg)}
    first_index = plan.next_index
    with process(gateway_command(port, args.workers), env, log) as gw:
        wait_http(f"http://127.0.0.1:{port}/readyz", gw, log)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        for d in plan.delays_ms:
            status, headers = probe(url, model_for_gateway(d), False)
            if status != 200:
                raise RuntimeError(f"{mode}: probe answered {status} {headers}")
        cells = measure_mode(
            plan, mode, url, model_for_gateway, gw.pid, {d: p for d, (_, p) in stubs.items()}
        )
        report.setdefault("rss_mb", {})[mode] = rss_mb(gw.pid)
        if mode == "policies_on" and args.profile and 0.0 in plan.delays_ms:
            keep = Path(args.out) / (f"profile-{args.tag}" if args.tag else "profile")
            report["profile"] = profile_stages(plan, url, gw.pid, work, args.profile_seconds, keep)
        if mode == "policies_on" and args.rss_requests:
            report["rss"] = rss_run(plan, url, gw.pid, args.rss_requests, plan.next_index - first_index)
    return cells


def targets(cells: list[Cell], report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 11's must-hold numbers that this run measures (policies on, one worker, delay 0)."""
    on = {(c.stream, c.concurrency): c for c in cells if c.mode == "policies_on" and c.delay_ms == 0}
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, ok: bool | None) -> None:
        out.append({"name": name, "value": value, "met": ok})

    for stream in (False, True):
        c = on.get((stream, 16))
        if c and c.rps_ratio is not None:
            add(
                f"{'streaming' if stream else 'non-streaming'} c=16 >= 0.25x direct",
                c.rps_ratio,
                c.rps_ratio >= 0.25,
            )
    c = on.get((False, 1))
    if c and c.added_p50_ms is not None:
        add("added p50 c=1 non-streaming <= 1.0 ms", c.added_p50_ms, c.added_p50_ms <= 1.0)
    c = on.get((True, 1))
    if c and c.added_ttfb_p50_ms is not None:
        add("added TTFB p50 c=1 streaming <= 1.5 ms", c.added_ttfb_p50_ms, c.added_ttfb_p50_ms <= 1.5)
    for stream in (False, True):
        c = on.get((stream, 1))
        if c and c.added_p99_ms is not None:
            add(
                f"added p99 c=1 {'streaming' if stream else 'non-streaming'} <= 3 ms",
                c.added_p99_ms,
                c.added_p99_ms <= 3,
            )
    cpus = [c.server_cpu_ms for (s, _), c in on.items() if not s and c.server_cpu_ms is not None]
    if cpus:
        add("gateway CPU/request non-streaming (max over concurrency) <= 0.8 ms", max(cpus), max(cpus) <= 0.8)
    growth = (report.get("rss") or {}).get("growth")
    if growth is not None:
        add("RSS growth from 10k to N requests <= 10 %", growth, growth <= 0.10)
    return out


def _workers(report: dict[str, Any]) -> str:
    n = int(report.get("workers", 1))
    return "one uvicorn worker" if n == 1 else f"{n} uvicorn workers"


def markdown(cells: list[Cell], report: dict[str, Any]) -> str:
    m, w = report["machine"], report["workload"]
    lines = [
        f"Gateway overhead, `bench/overhead.py`, {m['date']}, commit `{m['commit']}` "
        f"(code under test: `{m['code_commit']}`): {m['nproc']} CPU(s) "
        f"({m['cpu_model']}), Python {m['python']}, {_workers(report)}, load generator `bench/loadgen.py` "
        f"(uvloop + httptools, closed loop), {report['plan']['duration_s']:g} s per cell after "
        f"{report['plan']['warmup_s']:g} s warm-up. Traffic: {w['user_turns']} real user turns, "
        f"{w['turns_per_conversation']}-turn conversations, a {w['system_prompt_chars']}-character system "
        f"prompt, body p50 {w['body_bytes_p50']} B / p99 {w['body_bytes_p99']} B, every new turn unique. "
        f"Load average before / after: {m['loadavg_before']} / {report['loadavg_after']}.",
        "",
        *markdown_table(cells),
        "",
        "Server CPU ms/req: CPU time of the gateway process (of the stub for `direct`) per response; "
        "it hardly depends on other load, unlike the wall-clock columns. TTFB: time to the first body "
        "byte (first SSE event). non-2xx: guardrail blocks (HTTP 400) of real prompts, kept out of "
        "the latency percentiles but counted in req/s.",
    ]
    for p in report.get("profile") or []:
        lines += [
            "",
            f"CPU per request by stage, policies on, {'streaming' if p['stream'] else 'non-streaming'}, "
            f"c=16, delay 0 (py-spy, {p['requests']} requests, "
            f"{fmt(p['cpu_ms_per_request'], 3)} ms/request):",
            "",
            "| stage | share | CPU ms/request |",
            "| --- | ---: | ---: |",
            *(f"| {r['stage']} | {r['share'] * 100:.1f} % | {fmt(r['cpu_ms'], 3)} |" for r in p["stages"]),
        ]
    if report.get("rss"):
        lines += ["", "RSS (MiB, policies on): " + json.dumps(report["rss"])]
    if report.get("rss_mb"):
        lines += ["", "RSS after the cells (MiB): " + json.dumps(report["rss_mb"])]
    if report.get("targets"):
        lines += ["", "Issue 11 must-hold (this run):", ""]
        lines += [
            f"- {t['name']}: {t['value']} ({'met' if t['met'] else 'NOT met'})" for t in report["targets"]
        ]
    if report.get("note"):
        lines += ["", f"Note: {report['note']}"]
    return "\n".join(lines) + "\n"


def default_policy_specs() -> list[dict[str, Any]]:
    """The default policy set (``rollguard.settings.default_policies``) as config dicts."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from rollguard.settings import default_policies

    return [p.model_dump(mode="json", exclude_defaults=True) | {"type": p.type} for p in default_policies()]


def plan_from(args: argparse.Namespace) -> Plan:
    def floats(s: str) -> tuple[float, ...]:
        return tuple(float(x) for x in s.split(",") if x)

    streams = {"no": (False,), "yes": (True,), "both": (False, True)}[args.stream]
    conc = tuple(int(x) for x in args.concurrency.split(","))
    return Plan(floats(args.delays), streams, conc, args.duration, args.warmup, args.turns)


def run(args: argparse.Namespace) -> int:
    plan = plan_from(args)
    modes = [m for m in args.modes.split(",") if m]
    report: dict[str, Any] = {"machine": machine(), "workload": Workload(plan.turns).describe()}
    report["plan"] = {k: v for k, v in asdict(plan).items() if k not in ("log", "next_index")}
    report["workers"] = args.workers
    cells: list[Cell] = []
    failures: list[str] = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    print(f"plan: {report['plan']}; load average {report['machine']['loadavg_before']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="rollguard-bench-") as tmp:
        work = Path(tmp)
        stubs: dict[float, tuple[str, int]] = {}
        with stub_servers(plan, env, work, stubs):
            if "direct" in modes:
                cells += _direct(plan, stubs)
            for mode in modes:
                if mode == "direct":
                    continue
                policies: list[dict[str, Any]] | None = [] if mode == "policies_off" else None
                try:
                    cells += run_gateway_mode(plan, args, mode, policies, stubs, work, report)
                except (RuntimeError, OSError) as exc:
                    failures.append(f"{mode}: {str(exc).strip()[-400:]}")
                    print(f"  {mode}: FAILED: {failures[-1]}", flush=True)
    compare(cells)
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    report["failures"] = failures
    report["targets"] = targets(cells, report)
    report["note"] = args.note
    write(args, cells, report)
    return 0 if not failures and all(c.errors == 0 for c in cells) else 1


def _direct(plan: Plan, stubs: dict[float, tuple[str, int]]) -> list[Cell]:
    """The ``direct`` cells: the load generator talks to each stub itself."""
    return [
        measure_cell(
            plan, "direct", f"{stubs[d][0]}/v1/chat/completions", "bench", d, s, c, stubs[d][1], None
        )
        for d in plan.delays_ms
        for s in plan.streams
        for c in plan.concurrencies
    ]


@contextlib.contextmanager
def stub_servers(
    plan: Plan, env: dict[str, str], work: Path, stubs: dict[float, tuple[str, int]]
) -> Iterator[None]:
    """Start one ``bench/stub.py`` per delay of ``plan``; fills ``stubs`` (delay -> (URL, pid))."""
    with contextlib.ExitStack() as stack:
        for d in plan.delays_ms:
            port, log = free_port(), work / f"stub-{d:g}.log"
            proc = stack.enter_context(process(stub_command(port, d), env, log))
            wait_http(f"http://127.0.0.1:{port}/v1/models", proc, log)
            stubs[d] = (f"http://127.0.0.1:{port}", proc.pid)
        yield


def write(args: argparse.Namespace, cells: list[Cell], report: dict[str, Any]) -> None:
    """Print the table and write ``overhead[-TAG].json`` / ``.md`` under ``--out``."""
    text = markdown(cells, report)
    print()
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"overhead-{args.tag}" if args.tag else "overhead"
    (out / f"{name}.json").write_text(
        json.dumps({**report, "cells": [asdict(c) for c in cells]}, indent=2) + "\n", encoding="utf-8"
    )
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    print(f"wrote {out / name}.json and .md")


QUICK = {"duration": 1.0, "warmup": 0.3, "delays": "0", "concurrency": "1,16"}
"""``--quick`` defaults (an option given explicitly still wins)."""


def parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None, add_help=add_help)
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}, no profile")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of measured load per cell")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of unrecorded load before a cell")
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated concurrencies")
    p.add_argument("--delays", default="0,50", help="comma-separated upstream delays (ms)")
    p.add_argument("--stream", choices=("no", "yes", "both"), default="both")
    p.add_argument("--modes", default="direct,policies_off,policies_on")
    p.add_argument("--turns", type=int, default=4, help="turns per simulated conversation")
    p.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="py-spy stage profile of policies_on (default: on, off with --quick)",
    )
    p.add_argument("--profile-seconds", type=float, default=8.0)
    p.add_argument(
        "--rss-requests",
        type=int,
        default=0,
        help="also serve N requests (policies_on) and report RSS after 10k and after N",
    )
    p.add_argument("--out", default=str(RESULTS), help="directory for the .json / .md")
    p.add_argument(
        "--workers", type=int, default=1, help="uvicorn workers of the gateway (the --workers N curve)"
    )
    p.add_argument("--tag", default="", help="file name suffix: overhead-TAG.json")
    p.add_argument("--note", default="", help="a note written under the table (e.g. machine load)")
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``--quick`` replaces the defaults the user did not override."""
    if "--quick" in (sys.argv[1:] if argv is None else argv):
        p.set_defaults(**QUICK)
    args = p.parse_args(argv)
    if args.profile is None:
        args.profile = not args.quick
    return args


def main(argv: list[str] | None = None) -> int:
    return run(parse(parser(), argv))


if __name__ == "__main__":
    sys.exit(main())
