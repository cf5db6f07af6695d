"""The demo's report: ``summarize``'s output as rich tables."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from gateway.demo.replay import Outcome


def _fmt_ms(x: Any) -> str:
    return "-" if x is None else f"{x:.1f} ms"


def render_summary(summary: dict[str, Any]) -> Table:
    """A rich table of ``summarize``'s output (one row per figure)."""
    table = Table(title="rollguard demo", show_header=True, header_style="bold")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_row("requests", str(summary["requests"]))
    table.add_row("allowed", str(summary["allowed"]))
    table.add_row("redacted", str(summary["redacted"]))
    table.add_row("flagged", str(summary["flagged"]))
    table.add_row("blocked", str(summary["blocked"]))
    for policy, n in summary["blocked_by_policy"].items():
        table.add_row(f"  blocked by {policy}", str(n))
    table.add_row("errors", str(summary["errors"]), style="red" if summary["errors"] else None)
    for variant, n in summary.get("variants", {}).items():
        table.add_row(f"  served by variant {variant}", str(n))
    lat = summary["latency_ms"]
    table.add_row(
        "latency p50 / p99 (whole replay, under concurrent load)",
        f"{_fmt_ms(lat['p50'])} / {_fmt_ms(lat['p99'])}",
    )
    if summary.get("direct"):
        d = summary["direct"]
        table.add_row(
            f"direct p50 / p99 (one at a time, n={d['pairs']} prompts allowed both ways)",
            f"{_fmt_ms(d['p50'])} / {_fmt_ms(d['p99'])}",
        )
        table.add_row(
            "via gateway p50 / p99 (same prompts, one at a time)",
            f"{_fmt_ms(d['gateway_p50'])} / {_fmt_ms(d['gateway_p99'])}",
        )
    added = summary.get("added_ms")
    table.add_row(
        "added latency p50 / p99 over direct",
        "-" if not added else f"{_fmt_ms(added['p50'])} / {_fmt_ms(added['p99'])}",
    )
    if summary.get("requests_per_s"):
        table.add_row("throughput", f"{summary['requests_per_s']:.1f} req/s in {summary['wall_s']:.1f} s")
    return table


def render_by_kind(summary: dict[str, Any]) -> Table:
    """A rich table: one row per corpus kind, one column per outcome."""
    table = Table(
        title="outcome by kind of prompt",
        header_style="bold",
        caption="harmful / borderline: XSTest topics, not attacks; guardrails judge attack wrappers, "
        "not topics (refusing is the model's job)",
        caption_justify="left",
    )
    table.add_column("kind")
    for o in Outcome:
        table.add_column(o.value, justify="right")
    for kind, row in summary["by_kind"].items():
        table.add_row(kind, *(str(row.get(o.value, 0)) for o in Outcome))
    return table
