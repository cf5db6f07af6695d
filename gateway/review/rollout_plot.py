"""The rollout plot: one panel per plan metric, each judged step's estimate (canary - control) with
its always-valid interval, against the metric's tolerance, the bad side shaded. Drawn with
matplotlib's object API (``matplotlib.figure.Figure``, no pyplot state, so it is safe off the event
loop's thread), as SVG for the console (``svg``) and PNG for reports (``png``).

Axes are in readable units: rate metrics in points (canary share - control share, x 100), the
reply length as the relative change of the geometric-mean length (``exp(d) - 1``, in %), p95 metrics
as the canary's share of requests above the tolerance-adjusted control p95 minus 5 %, in points.
Marker colour is the judge's status: red ``fail``, green ``ok``, grey ``no_breach``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from gateway.review.rollout_view import MetricRow, RolloutView

COLOURS = {"fail": "#b42318", "ok": "#067647", "no_breach": "#667085"}
PANEL_W_IN, PANEL_H_IN = 3.6, 2.6
"""One panel's size in inches."""


def _axis(row: MetricRow) -> tuple[Callable[[float], float], str]:
    """The display transform of a metric's test scale, and the y-axis label."""
    if row.scale.startswith("difference of mean log"):
        return (lambda v: 100.0 * math.expm1(v)), "length change (%)"
    if row.scale.startswith("canary share above"):
        return (lambda v: 100.0 * v), "share above p95 - 5 % (points)"
    return (lambda v: 100.0 * v), "canary - control (points)"


def _panel(fig: Figure, ax_index: int, cols: int, rows: int, row: MetricRow, labels: list[str]) -> None:
    ax = fig.add_subplot(rows, cols, ax_index)
    ax.set_gid(f"metric-{row.name}")
    tf, ylabel = _axis(row)
    ax.set_title(f"{row.name} ({row.kind})", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    pts = [p for p in row.points if p.effect is not None and p.lower is not None and p.upper is not None]
    tol = next((p.tolerance for p in reversed(row.points) if p.tolerance is not None), None)
    if tol is not None:
        t = tf(tol)
        ax.axhline(t, color=COLOURS["fail"], linestyle="--", linewidth=1, label="tolerance")
        bad_up = row.direction == "increase_is_bad"
        ax.axhspan(t, t + 1e6 if bad_up else t - 1e6, color=COLOURS["fail"], alpha=0.06)
    ax.axhline(0.0, color="#98a2b3", linewidth=0.6)
    ys: list[float] = [0.0] + ([tf(tol)] if tol is not None else [])
    for p in pts:
        assert p.effect is not None and p.lower is not None and p.upper is not None
        y, lo_, hi_ = tf(p.effect), tf(p.lower), tf(p.upper)
        colour = COLOURS.get(p.status, COLOURS["no_breach"])
        ax.errorbar([p.step], [y], yerr=[[y - lo_], [hi_ - y]], fmt="o", color=colour, capsize=3, ms=4)
        ys += [lo_, hi_]
    if not pts:
        ax.text(0.5, 0.5, "no data yet", transform=ax.transAxes, ha="center", fontsize=8, color="#667085")
    span = (max(ys) - min(ys)) or 1.0
    ax.set_ylim(min(ys) - 0.15 * span, max(ys) + 0.15 * span)


def figure(view: RolloutView, cols: int = 3) -> Figure:
    """The figure of ``view``: one panel per metric (x: the plan's judged steps in %, y: the
    estimate with its interval; dashed line: the tolerance; shaded: the bad side)."""
    judged = view.steps[:-1] if len(view.steps) > 1 else view.steps
    labels = [f"{p:g} %" for p in judged]
    n = max(1, len(view.metrics))
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(PANEL_W_IN * cols, PANEL_H_IN * rows + 0.4), layout="constrained")
    fig.suptitle(f"rollout {view.id}: estimate and always-valid interval per step", fontsize=10)
    for i, row in enumerate(view.metrics, start=1):
        _panel(fig, i, cols, rows, row, labels)
    return fig


def svg(view: RolloutView) -> str:
    """The plot as an SVG document (text kept as text, no timestamp: same view, same bytes)."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "rollguard"}):
        figure(view).savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    start = text.find("<svg")
    return text[start:] if start >= 0 else text


def png(view: RolloutView, path: Path, dpi: int = 110) -> Path:
    """Write the plot as PNG to ``path`` (parent directories created); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure(view).savefig(path, format="png", dpi=dpi, metadata={"Software": None})
    return path
