"""The rollout demo's report: ``report.md`` (scenario, plan, each step's outcome, each metric's
estimate and always-valid interval against its tolerance at the deciding look, the review items)
and ``rollout-metrics.png`` (``gateway.review.rollout_plot``) in one directory.

Numbers in readable units: rates in percent and their differences in points; the reply length as
the change of the geometric-mean length in percent (``rollout_pages.shown``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from detectors.rollout_replay import ReplayResult
from gateway.review import rollout_plot
from gateway.review.rollout_pages import shown
from gateway.review.rollout_view import ReviewItemView, RolloutView

PLOT_NAME = "rollout-metrics.png"


def _steps_table(result: ReplayResult) -> list[str]:
    rows = [
        "| step | canary share | outcome | reason | canary / control requests | looks | sample-ratio p |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in result.steps:
        j = s.judgment
        why = j.reason + (f": {j.metric}" if j.metric else "")
        rows.append(
            f"| {s.step + 1} | {s.percent:g} % | **{j.outcome.value}** | {why} | "
            f"{s.canary_requests} / {s.control_requests} | {s.looks} | {j.srm.p:.3g} |"
        )
    return rows


def _metrics_table(view: RolloutView) -> list[str]:
    rows = [
        "| metric | kind | status | control | canary | effect | always-valid interval | tolerance | unit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in view.metrics:
        d = shown(m)
        status = m.current.status if m.current else "no_data"
        mark = f"**{status}**" if status == "fail" else status
        rows.append(
            f"| `{m.name}` | {m.kind} | {mark} | {d['control']} | {d['canary']} | {d['effect']} | "
            f"{d['interval']} | {d['tolerance']} | {d['unit']} |"
        )
    return rows


def _items(items: Sequence[ReviewItemView]) -> list[str]:
    if not items:
        return ["No review item was opened."]
    return [
        f"- `{i.queue}` queue, priority **{i.priority}**, item `{i.id}` ({i.status}): console `{i.url}`"
        for i in items
    ]


def render_report(
    view: RolloutView, result: ReplayResult, items: Sequence[ReviewItemView], scenario: Sequence[str]
) -> str:
    """The markdown report (the plot is referenced as ``PLOT_NAME`` next to it); ``scenario`` is
    the paragraph describing the two arms."""
    last = result.steps[-1]
    failed = ", ".join(f"`{m}`" for m in last.judgment.failed) or "-"
    lines = [
        f"# Rollout demo: `{view.id}` ({view.subject})",
        "",
        *scenario,
        "",
        f"Plan: steps {' -> '.join(f'{p:g} %' for p in view.steps)}, the default metrics (those the",
        f"records measure; dropped: {', '.join(result.dropped_metrics) or 'none'}), seed {result.seed},",
        f"plan version `{result.plan_version}`. Offline replay + judge (`detectors.rollout_replay`).",
        "",
        f"**Outcome: {result.final.replace('_', ' ')}** at step {last.step + 1} ({last.percent:g} %)"
        f" after {result.decided_after_canary_requests} canary requests: {result.reason}"
        f" on `{result.metric}`; failed metrics at that look: {failed}. The canary is at {view.percent:g} %.",
        "",
        "## Steps",
        "",
        *_steps_table(result),
        "",
        f"## Metrics at the deciding look (step {last.step + 1})",
        "",
        *_metrics_table(view),
        "",
        f"![each metric's estimate and interval per step]({PLOT_NAME})",
        "",
        "## Review",
        "",
        *_items(items),
        "",
    ]
    return "\n".join(lines)


def write_report(
    dest: Path,
    view: RolloutView,
    result: ReplayResult,
    items: Sequence[ReviewItemView],
    scenario: Sequence[str] = (),
) -> Path:
    """Write ``report.md`` and ``PLOT_NAME`` under ``dest`` (created); returns the report's path."""
    dest.mkdir(parents=True, exist_ok=True)
    rollout_plot.png(view, dest / PLOT_NAME)
    path = dest / "report.md"
    path.write_text(render_report(view, result, items, scenario), encoding="utf-8")
    return path
