"""One benchmark cell = one (mode, upstream delay, streaming, concurrency) combination measured with
the load generator, plus the CPU the server process used meanwhile. Shared by ``overhead.py`` and
``peer.py`` so both run exactly the same cells the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from procs import cpu_seconds, run_loadgen


@dataclass
class Plan:
    """What to run: the cell grid and the seconds per cell."""

    delays_ms: tuple[float, ...] = (0.0, 50.0)
    streams: tuple[bool, ...] = (False, True)
    concurrencies: tuple[int, ...] = (1, 16, 64)
    duration_s: float = 5.0
    warmup_s: float = 1.0
    turns: int = 4
    next_index: int = 0  # index of the next request body (never reused within a run)
    log: list[str] = field(default_factory=list)


@dataclass
class Cell:
    mode: str
    delay_ms: float
    stream: bool
    concurrency: int
    requests: int
    ok: int
    non_2xx: int
    errors: int
    duration_s: float
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    ttfb_p50_ms: float | None
    ttfb_p99_ms: float | None
    server_cpu_ms: float | None = None
    upstream_cpu_ms: float | None = None
    client_cpu_ms: float | None = None
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    added_ttfb_p50_ms: float | None = None
    rps_ratio: float | None = None


def _per_request(a: float | None, b: float | None, served: int) -> float | None:
    """CPU ms per request from two ``cpu_seconds`` readings."""
    if a is None or b is None or not served:
        return None
    return round((b - a) * 1000 / served, 3)


def load(plan: Plan, url: str, model: str, stream: bool, concurrency: int, **kw: Any) -> dict[str, Any]:
    """Run the load generator with fresh bodies (advances ``plan.next_index``)."""
    r = run_loadgen(url, model, stream, concurrency, start=plan.next_index, turns=plan.turns, **kw)
    plan.next_index += int(r["requests"])
    return r


def measure_cell(
    plan: Plan,
    mode: str,
    url: str,
    model: str,
    delay_ms: float,
    stream: bool,
    concurrency: int,
    server_pid: int,
    upstream_pid: int | None,
) -> Cell:
    """Warm up, then measure one cell. Server CPU per request: CPU seconds of ``server_pid`` during
    the measured load divided by the responses served (``/proc/<pid>/stat``); unlike the wall-clock
    columns it hardly moves when other work shares the machine."""
    if plan.warmup_s > 0:
        load(plan, url, model, stream, concurrency, duration_s=plan.warmup_s)
    cpu0 = cpu_seconds(server_pid), cpu_seconds(upstream_pid) if upstream_pid else None
    r = load(plan, url, model, stream, concurrency, duration_s=plan.duration_s)
    cpu1 = cpu_seconds(server_pid), cpu_seconds(upstream_pid) if upstream_pid else None
    served = int(r["ok"]) + int(r["non_2xx"])
    cell = Cell(
        mode=mode,
        delay_ms=delay_ms,
        stream=stream,
        concurrency=concurrency,
        requests=int(r["requests"]),
        ok=int(r["ok"]),
        non_2xx=int(r["non_2xx"]),
        errors=int(r["errors"]),
        duration_s=float(r["duration_s"]),
        rps=float(r["rps"]),
        p50_ms=r["p50_ms"],
        p99_ms=r["p99_ms"],
        ttfb_p50_ms=r["ttfb_p50_ms"] if stream else None,
        ttfb_p99_ms=r["ttfb_p99_ms"] if stream else None,
        server_cpu_ms=_per_request(cpu0[0], cpu1[0], served),
        upstream_cpu_ms=_per_request(cpu0[1], cpu1[1], served) if upstream_pid else None,
        client_cpu_ms=r["client_cpu_ms"],
    )
    line = (
        f"  {mode:14s} delay={delay_ms:<4g} stream={'yes' if stream else 'no ':3s} c={concurrency:<3d} "
        f"{cell.rps:8.1f} req/s p50 {fmt(cell.p50_ms)} p99 {fmt(cell.p99_ms)} ms "
        f"ttfb p50 {fmt(cell.ttfb_p50_ms)} cpu {fmt(cell.server_cpu_ms)} ms/req "
        f"non-2xx {cell.non_2xx} errors {cell.errors}"
    )
    print(line, flush=True)
    plan.log.append(line)
    return cell


def measure_mode(
    plan: Plan, mode: str, url: str, model_for: Any, server_pid: int, upstream_pids: dict[float, int | None]
) -> list[Cell]:
    """Every cell of ``plan`` for one server. ``model_for(delay_ms)``: the model name that reaches
    the stub with that delay; ``upstream_pids[delay_ms]``: that stub's pid (``None`` for direct)."""
    return [
        measure_cell(plan, mode, url, model_for(d), d, s, c, server_pid, upstream_pids.get(d))
        for d in plan.delays_ms
        for s in plan.streams
        for c in plan.concurrencies
    ]


def compare(cells: list[Cell], baseline: str = "direct") -> None:
    """Fill added p50/p99/TTFB p50 (ms) and the req/s ratio against the ``baseline`` cell of the
    same shape."""
    base = {(c.delay_ms, c.stream, c.concurrency): c for c in cells if c.mode == baseline}
    for c in cells:
        d = base.get((c.delay_ms, c.stream, c.concurrency))
        if d is None or c.mode == baseline:
            continue
        c.added_p50_ms = _diff(c.p50_ms, d.p50_ms)
        c.added_p99_ms = _diff(c.p99_ms, d.p99_ms)
        c.added_ttfb_p50_ms = _diff(c.ttfb_p50_ms, d.ttfb_p50_ms)
        c.rps_ratio = round(c.rps / d.rps, 3) if d.rps else None


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown_table(cells: list[Cell]) -> list[str]:
    """The cells as a markdown table (one line per cell)."""
    lines = [
        "| mode | delay ms | stream | conc. | req/s | p50 ms | p99 ms | TTFB p50 ms | added p50 ms "
        "| added p99 ms | added TTFB p50 ms | req/s vs direct | server CPU ms/req | client CPU ms/req "
        "| non-2xx |",
        "| --- | ---: | --- " + "| ---: " * 12 + "|",
    ]
    for c in cells:
        lines.append(
            f"| {c.mode} | {c.delay_ms:g} | {'yes' if c.stream else 'no'} | {c.concurrency} | {c.rps:.0f} "
            f"| {fmt(c.p50_ms)} | {fmt(c.p99_ms)} | {fmt(c.ttfb_p50_ms)} | {fmt(c.added_p50_ms)} "
            f"| {fmt(c.added_p99_ms)} | {fmt(c.added_ttfb_p50_ms)} | {fmt(c.rps_ratio)} "
            f"| {fmt(c.server_cpu_ms)} | {fmt(c.client_cpu_ms, 3)} | {c.non_2xx} |"
        )
    return lines
