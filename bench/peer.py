"""rollguard next to a peer: LiteLLM Proxy, through the same cells as ``bench/overhead.py``, in the
same run, against the same upstream stubs and with the same load generator and traffic.

Usage (from the repository root)::

    .venv/bin/python bench/peer.py                       # the full grid
    .venv/bin/python bench/peer.py --quick --stream no --concurrency 16   # one quick cell

What it does:

1. makes a throwaway virtualenv (``--venv``, default ``/tmp/rollguard-peer-venv``; reused when it
   already holds the wanted version) and ``pip install 'litellm[proxy]==1.108.7'`` into it: later
   releases' proxy extra does not install from the package index reachable here (issue 11). When the
   install fails the script prints ``peer skipped: ...`` with pip's last lines and exits 0;
2. writes a LiteLLM Proxy config with the same aliases (``bench-d<delay>`` -> ``openai/bench`` at the
   stub with that delay), no database, no master key (as the rollguard gateway here has no API
   keys), no callbacks, no guardrails, and starts it with one worker
   (``litellm --config FILE --num_workers 1``);
3. measures ``direct``, rollguard (``policies_on``: the default policies, one uvicorn worker) and
   ``litellm`` cell by cell, and writes ``bench/results/peer[-TAG].json`` / ``.md`` with the full
   table and a side-by-side one: req/s of rollguard / LiteLLM (issue 11 asks for >= 10x at
   concurrency 16), added p50, CPU per request of each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import overhead
from cells import Cell, Plan, compare, fmt, markdown_table, measure_mode
from procs import REPO, free_port, machine, probe, process, rss_mb, wait_http
from workload import Workload

LITELLM_VERSION = "1.108.7"
DEFAULT_VENV = Path(tempfile.gettempdir()) / "rollguard-peer-venv"


def _installed(venv: Path, version: str) -> bool:
    py = venv / "bin" / "python"
    if not py.exists():
        return False
    check = (
        "import importlib.metadata as m, litellm.proxy.proxy_server; "
        f"assert m.version('litellm') == {version!r}"
    )
    return subprocess.run([str(py), "-c", check], capture_output=True, timeout=300).returncode == 0


def ensure_litellm(venv: Path, version: str) -> tuple[Path | None, str]:
    """The ``litellm`` CLI of a venv holding ``litellm[proxy]==version`` (created and installed when
    missing, ~2-5 min), or ``(None, reason)`` when it cannot be installed."""
    exe = venv / "bin" / "litellm"
    if _installed(venv, version) and exe.exists():
        return exe, "reused"
    base = getattr(sys, "_base_executable", None) or sys.executable
    steps = [
        [base, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--quiet", "--upgrade", "pip"],
        [str(venv / "bin" / "pip"), "install", "--quiet", f"litellm[proxy]=={version}"],
    ]
    for cmd in steps:
        print(f"peer: {' '.join(cmd)}", flush=True)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{cmd[0]}: {exc}"
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-2:]
            return None, " | ".join(line[-300:] for line in last)
    if not (_installed(venv, version) and exe.exists()):
        return None, f"litellm {version} installed but its proxy does not import"
    return exe, "installed"


def litellm_config(path: Path, stubs: dict[float, str]) -> Path:
    """LiteLLM Proxy config: the same aliases as the rollguard gateway, nothing else."""
    config = {
        "model_list": [
            {
                "model_name": overhead.model_for_gateway(d),
                "litellm_params": {"model": "openai/bench", "api_base": url + "/v1", "api_key": "bench"},
            }
            for d, url in stubs.items()
        ],
        "router_settings": {"num_retries": 0},
        "litellm_settings": {"num_retries": 0, "request_timeout": 60, "telemetry": False},
        # no keys, like the rollguard gateway under test (loopback, no API keys): no auth work
        "general_settings": {"dangerously_permit_weak_or_unset_master_key": True},
    }
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is valid YAML
    return path


def run_litellm(
    plan: Plan, exe: Path, stubs: dict[float, tuple[str, int]], work: Path, report: dict[str, Any]
) -> list[Cell]:
    """Start LiteLLM Proxy (one worker) and measure its cells."""
    cfg = litellm_config(work / "litellm.yaml", {d: u for d, (u, _) in stubs.items()})
    port, log = free_port(), work / "litellm.log"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL")},
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "NO_DOCS": "True",
    }
    cmd = [str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    with process(cmd, env, log) as proxy:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", proxy, log, timeout_s=300)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        for d in plan.delays_ms:
            status, _ = probe(url, overhead.model_for_gateway(d), False)
            if status != 200:
                raise RuntimeError(f"litellm: probe answered {status}: {log.read_text()[-800:]}")
        cells = measure_mode(
            plan, "litellm", url, overhead.model_for_gateway, proxy.pid, {d: p for d, (_, p) in stubs.items()}
        )
        report.setdefault("rss_mb", {})["litellm"] = rss_mb(proxy.pid)
    return cells


def side_by_side(cells: list[Cell]) -> list[dict[str, Any]]:
    """Per cell shape: rollguard (policies_on) vs litellm: req/s ratio, added p50, CPU/request."""
    rg = {(c.delay_ms, c.stream, c.concurrency): c for c in cells if c.mode == "policies_on"}
    rows = []
    for c in cells:
        r = rg.get((c.delay_ms, c.stream, c.concurrency))
        if c.mode != "litellm" or r is None:
            continue
        rows.append(
            {
                "delay_ms": c.delay_ms,
                "stream": c.stream,
                "concurrency": c.concurrency,
                "rollguard_rps": r.rps,
                "litellm_rps": c.rps,
                "rps_ratio": round(r.rps / c.rps, 2) if c.rps else None,
                "rollguard_added_p50_ms": r.added_p50_ms,
                "litellm_added_p50_ms": c.added_p50_ms,
                "rollguard_cpu_ms": r.server_cpu_ms,
                "litellm_cpu_ms": c.server_cpu_ms,
            }
        )
    return rows


def markdown(cells: list[Cell], rows: list[dict[str, Any]], report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"rollguard (default policies on) vs LiteLLM Proxy {LITELLM_VERSION} (no guardrails), one worker "
        f"each, same run, same stubs and load generator (`bench/peer.py`), {m['date']}, commit "
        f"`{m['commit']}` (code under test: `{m['code_commit']}`): {m['nproc']} CPU(s) ({m['cpu_model']}), "
        f"Python {m['python']}, "
        f"{report['plan']['duration_s']:g} s per cell. Load average before / after: "
        f"{m['loadavg_before']} / {report['loadavg_after']}.",
        "",
        "| delay ms | stream | conc. | rollguard req/s | LiteLLM req/s | rollguard / LiteLLM "
        "| rollguard added p50 ms | LiteLLM added p50 ms | rollguard CPU ms/req | LiteLLM CPU ms/req |",
        "| ---: | --- " + "| ---: " * 8 + "|",
    ]
    for r in rows:
        lines.append(
            f"| {r['delay_ms']:g} | {'yes' if r['stream'] else 'no'} | {r['concurrency']} "
            f"| {r['rollguard_rps']:.0f} | {r['litellm_rps']:.0f} | {fmt(r['rps_ratio'])} "
            f"| {fmt(r['rollguard_added_p50_ms'])} | {fmt(r['litellm_added_p50_ms'])} "
            f"| {fmt(r['rollguard_cpu_ms'])} | {fmt(r['litellm_cpu_ms'])} |"
        )
    lines += ["", "All cells:", "", *markdown_table(cells)]
    if report.get("note"):
        lines += ["", f"Note: {report['note']}"]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    exe, how = ensure_litellm(Path(args.venv), args.litellm_version)
    if exe is None:
        print(f"peer skipped: cannot install litellm[proxy]=={args.litellm_version}: {how}", flush=True)
        return 0
    print(f"peer: LiteLLM Proxy {args.litellm_version} ({how}) at {exe}", flush=True)
    plan = overhead.plan_from(args)
    modes = [m for m in args.modes.split(",") if m]
    report: dict[str, Any] = {"machine": machine(), "workload": Workload(plan.turns).describe()}
    report["plan"] = {k: v for k, v in asdict(plan).items() if k not in ("log", "next_index")}
    args.profile, args.rss_requests = False, 0
    cells: list[Cell] = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="rollguard-peer-") as tmp:
        work = Path(tmp)
        stubs: dict[float, tuple[str, int]] = {}
        with overhead.stub_servers(plan, env, work, stubs):
            if "direct" in modes:
                cells += overhead._direct(plan, stubs)
            for mode in modes:
                if mode in ("policies_on", "policies_off"):
                    policies: list[dict[str, Any]] | None = [] if mode == "policies_off" else None
                    cells += overhead.run_gateway_mode(plan, args, mode, policies, stubs, work, report)
                elif mode == "litellm":
                    cells += run_litellm(plan, exe, stubs, work, report)
    compare(cells)
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    report["note"] = args.note
    rows = side_by_side(cells)
    text = markdown(cells, rows, report)
    print()
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"peer-{args.tag}" if args.tag else "peer"
    payload = {**report, "side_by_side": rows, "cells": [asdict(c) for c in cells]}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    print(f"wrote {out / name}.json and .md")
    return 0 if all(c.errors == 0 for c in cells) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None, parents=[overhead.parser(add_help=False)]
    )
    p.set_defaults(modes="direct,policies_on,litellm")
    p.add_argument("--venv", default=str(DEFAULT_VENV), help="the throwaway virtualenv for LiteLLM")
    p.add_argument("--litellm-version", default=LITELLM_VERSION)
    return run(overhead.parse(p, argv))


if __name__ == "__main__":
    sys.exit(main())
