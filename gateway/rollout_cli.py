"""``rollguard rollout ...``: the staged-rollout commands (a Typer sub-app registered in
``gateway.cli``). The file reading lives here; the simulation is ``detectors.rollout_replay``.

``rollguard rollout replay [--plan PLAN.yaml] --control A.jsonl --canary B.jsonl [--seed N]
[--json]``: score both record files once with the shortcut detectors, simulate the plan's steps
(promotions approved automatically) and print each step's outcome with its evidence. Exit 0 when
it ran (whatever the outcome), 2 on bad input with one ``error: ...`` line on standard error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from detectors.rollout_judge import MetricEvidence
    from detectors.rollout_replay import ReplayResult
    from rollguard.rollout import RolloutPlan

rollout_app = typer.Typer(help="Staged rollouts.", no_args_is_help=True, rich_markup_mode=None)


class BadInput(Exception):
    """A file or plan the replay cannot use; the message is one line."""


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines file (blank lines skipped). Raises ``BadInput`` naming the
    file and line of the first problem, or when the file holds no record."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BadInput(f"{path}: {exc.strerror or exc}") from None
    out: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}: line {n}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(rec, dict):
            raise BadInput(f"{path}: line {n}: expected a JSON object, got {type(rec).__name__}")
        out.append(rec)
    if not out:
        raise BadInput(f"{path}: no records")
    return out


def read_plan(path: Path | None) -> RolloutPlan:
    """The plan in a YAML file (the plan mapping itself, or under a top-level ``rollout`` key);
    the default plan without a file. Raises ``BadInput`` with the config error's one line."""
    import yaml

    from rollguard.errors import ConfigError
    from rollguard.rollout import default_plan, parse_plan

    if path is None:
        return default_plan()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(data, Mapping) and isinstance(data.get("rollout"), Mapping):
        data = data["rollout"]
    if not isinstance(data, Mapping):
        raise BadInput(f"{path}: expected a mapping of plan fields")
    try:
        return parse_plan(data, source=str(path))
    except ConfigError as exc:
        raise BadInput(str(exc)) from None


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _metric_line(m: MetricEvidence) -> str:
    """One metric's row. A p95 metric is tested on shares, not milliseconds: its row says so
    (``share > threshold``: the share of requests above the control's tolerance-adjusted p95;
    the control's is 0.05 by definition) and gives the p95s and threshold in ms after it."""
    p95 = "threshold_ms" in m.extra
    unit = "share > threshold: " if p95 else ""
    row = (
        f"  {m.name:<26} {m.kind:<9} {m.status:<9} {unit}control {_fmt(m.control.mean)} (n={m.control.n})"
        f"  canary {_fmt(m.canary.mean)} (n={m.canary.n})  effect {_fmt(m.effect)}"
        f"  interval [{_fmt(m.lower)}, {_fmt(m.upper)}]  tolerance {_fmt(m.tolerance)}"
    )
    if p95:
        e = m.extra
        row += (
            f"  (p95 ms: control {_fmt(e.get('control_p95_ms'))}, canary {_fmt(e.get('canary_p95_ms'))},"
            f" threshold {_fmt(e.get('threshold_ms'))})"
        )
    if "length_ratio" in m.extra:
        row += f"  (length ratio {_fmt(m.extra['length_ratio'], 3)})"
    return row


def render_text(result: ReplayResult) -> str:
    """The human report: one block per step (outcome, requests, each metric's estimate and
    interval against its tolerance), then the final decision."""
    lines = []
    if result.dropped_metrics:
        lines.append(f"not measured by the records (dropped): {', '.join(result.dropped_metrics)}")
    for s in result.steps:
        j = s.judgment
        lines.append(
            f"step {s.step + 1} ({s.percent:g} %): {j.outcome.value} ({j.reason}"
            f"{': ' + j.metric if j.metric else ''}) after {s.canary_requests} canary / "
            f"{s.control_requests} control requests, {s.looks} looks, sample-ratio p={_fmt(j.srm.p, 3)}"
        )
        lines.extend(_metric_line(m) for m in j.metrics)
    where = f" ({result.reason}{': ' + result.metric if result.metric else ''})"
    lines.append(
        f"final: {result.final}{where} after {result.decided_after_canary_requests} canary requests"
        f" (seed {result.seed}, plan {result.plan_version})"
    )
    return "\n".join(lines)


@rollout_app.command("replay")
def replay_cmd(
    control: Annotated[Path, typer.Option("--control", help="control arm records (JSON Lines)")],
    canary: Annotated[Path, typer.Option("--canary", help="canary arm records (JSON Lines)")],
    plan: Annotated[Path | None, typer.Option("--plan", help="plan YAML (default: the shipped plan)")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="simulation seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on standard output")] = False,
) -> None:
    """Simulate a staged rollout of the canary records against the control records and judge every
    step as the controller would (promotions approved automatically). Records are shaped as
    ``rollguard detect`` reads them, with optional ``latency_ms``, ``ttft_ms`` and ``error``.

    Each arm's requests are drawn from its file at random WITH replacement (seeded by --seed), so a
    step's canary/control request counts can exceed the number of lines in the file.

    A p95 metric (latency_p95_ms, ttft_p95_ms) is tested on shares: its row shows the share of
    requests above the control's tolerance-adjusted p95 ("share > threshold"; the control's is
    0.05 by definition), then the p95s and the threshold in milliseconds."""
    from detectors.rollout_replay import replay, score_records
    from detectors.shortcuts import ShortcutDetectors

    try:
        the_plan = read_plan(plan)
        arms = [read_records(control), read_records(canary)]
        det = ShortcutDetectors()
        pools = []
        for path, recs in zip((control, canary), arms, strict=True):
            try:
                pools.append(score_records(recs, det))
            except ValueError as exc:
                raise BadInput(f"{path}: {exc}") from None
        try:
            result = replay(the_plan, pools[0], pools[1], seed=seed)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    except BadInput as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result.to_dict(), allow_nan=False) if as_json else render_text(result))
