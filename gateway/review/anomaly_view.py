"""The anomaly card of the console's item page: an anomaly summary (``routing.anomaly_summary``)
turned into rows a reviewer can read.

Times (``*_ms`` epoch milliseconds) become UTC ISO-style times with a relative age, the window one
row with its length; ``None`` values are left out, and the significance row says which measure the
detector gave (a p-value, or the calibrated in-control average run length ARL0) or that it gave
none; numbers are rounded for reading (the raw key and value stay in the row's tooltip). Fields a
detector adds later (a list of affected groups, say) are shown with a readable name and value.
Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LABELS = {
    "id": "Anomaly id",
    "detector": "Detector",
    "severity": "Severity",
    "statistic": "Statistic",
    "value": "Value",
    "threshold": "Threshold",
    "direction": "Direction",
    "effect_size": "Effect size",
    "effect": "Effect size",
    "effect_floor": "Practical floor",
    "n_window": "Interactions in window",
    "n_reference": "Interactions in reference",
    "variant": "Flag variant",
    "model": "Model",
    "tenant": "Tenant",
    "group": "Group",
    "groups": "Affected groups",
    "created_ms": "Raised",
    "reason": "Reason",
    "window_start_id": "Window starts at interaction",
    "window_end_id": "Window ends at interaction",
    "top_features": "Top features",
}
"""Readable names of the fields detectors write today; others get their key, capitalised."""

_SKIP = {"window_start_ms", "window_end_ms", "p_value", "arl", "exemplars"}
"""Folded into the window and significance rows (or shown elsewhere on the page)."""

_MAX_ITEMS = 20


@dataclass(frozen=True, slots=True)
class Fact:
    """One row: ``label``, the readable ``text``, and ``raw`` (``key = value``) for the tooltip."""

    key: str
    label: str
    text: str
    raw: str


def stamp(ms: int) -> str:
    """``2025-10-09 08:53:20 UTC`` from epoch milliseconds."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def when(ms: int, now_ms: int) -> str:
    """``2025-10-09 08:53:20 UTC (3 d ago)`` from epoch milliseconds."""
    return f"{stamp(ms)} ({relative(ms - now_ms)})"


def relative(delta_ms: int) -> str:
    """``5 min ago`` / ``in 2 h`` / ``just now`` for a signed offset in milliseconds."""
    s = abs(delta_ms) / 1000
    if s < 45:
        return "just now"
    unit, size = ("d", 86400) if s >= 86400 else ("h", 3600) if s >= 3600 else ("min", 60)
    n = max(1, round(s / size))
    return f"{n} {unit} ago" if delta_ms < 0 else f"in {n} {unit}"


def duration(ms: int) -> str:
    """``10 min``, ``2 h 5 min``, ``3 d 4 h``, ``42 s`` from a length in milliseconds."""
    s = max(0, round(ms / 1000))
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    if d:
        return f"{d} d {h} h" if h else f"{d} d"
    if h:
        return f"{h} h {m} min" if m else f"{h} h"
    if m:
        return f"{m} min {sec} s" if sec else f"{m} min"
    return f"{sec} s"


def number(x: float) -> str:
    """Readable number: integers with thousands separators, others to 4 significant digits
    (scientific below 0.001)."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int) or (math.isfinite(x) and x == int(x) and abs(x) < 1e15):
        return f"{int(x):,}"
    if not math.isfinite(x):
        return str(x)
    if x != 0 and abs(x) < 0.001:
        return f"{x:.2e}"
    return f"{x:,.4g}" if abs(x) < 1e6 else f"{x:,.0f}"


def text(value: Any) -> str:
    """Any summary value as reading text (lists joined, mappings as ``k=v``)."""
    if value is None:
        return "-"
    if isinstance(value, bool | int | float):
        return number(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={text(v)}" for k, v in value.items() if v is not None) or "-"
    if isinstance(value, list | tuple):
        shown = [text(v) for v in value[:_MAX_ITEMS]]
        more = len(value) - len(shown)
        return "; ".join(shown) + (f"; … {more} more" if more > 0 else "") if shown else "-"
    return str(value)


def _epoch_ms(key: str, value: Any) -> int | None:
    """``value`` as epoch milliseconds when ``key`` names one (``*_ms``) and it is a number."""
    if key.endswith("_ms") and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value) if math.isfinite(value) else None
    return None


def significance(summary: Mapping[str, Any]) -> Fact:
    """The significance row: the p-value, else the in-control average run length, else a note."""
    p, arl = summary.get("p_value"), summary.get("arl")
    raw = f"p_value = {p!r}, arl = {arl!r}"
    if isinstance(p, int | float) and not isinstance(p, bool):
        return Fact("p_value", "p-value", number(p), raw)
    if isinstance(arl, int | float) and not isinstance(arl, bool):
        msg = f"ARL0 {number(arl)} observations (expected run between false alarms of the CUSUM)"
        return Fact("arl", "Significance", msg, raw)
    return Fact("significance", "Significance", "not given by the detector", raw)


def anomaly_facts(summary: Mapping[str, Any], now_ms: int) -> list[Fact]:
    """The rows of the anomaly card, in the summary's order, with the window and significance
    rows after the statistic. ``now_ms``: the page's render time (for relative ages)."""
    facts: list[Fact] = []
    start, end = summary.get("window_start_ms"), summary.get("window_end_ms")

    def derived() -> list[Fact]:
        out = []
        s, e = _epoch_ms("window_start_ms", start), _epoch_ms("window_end_ms", end)
        if s is not None and e is not None:
            span = f"{stamp(s)} → {when(e, now_ms)}, {duration(e - s)}"
            out.append(Fact("window", "Window", span, f"window_start_ms = {s}, window_end_ms = {e}"))
        elif e is not None:
            out.append(Fact("window", "Window ends", when(e, now_ms), f"window_end_ms = {e}"))
        out.append(significance(summary))
        return out

    shown = {k: v for k, v in summary.items() if k not in _SKIP and v is not None and v not in ("", [], {})}
    anchor = next((k for k in ("threshold", "statistic") if k in shown), None)
    if anchor is None:
        facts += derived()
    for key, value in shown.items():
        label = LABELS.get(key) or key.replace("_", " ").capitalize()
        raw = f"{key} = {value!r}"[:300]
        ms = _epoch_ms(key, value)
        if ms is not None:
            facts.append(Fact(key, label.removesuffix(" ms"), when(ms, now_ms), raw))
        else:
            facts.append(Fact(key, label, text(value), raw))
        if key == anchor:
            facts += derived()
    return facts
