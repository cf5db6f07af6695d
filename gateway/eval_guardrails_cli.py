"""``rollguard eval guardrails``: recall and false-positive rate of the policy pipeline per family
and category, with 95 % Wilson intervals, on the generated red-team set (``policies.redteam``),
BIPIA and the held-out part of the shipped sets. Pure and in-process (``pre_call`` stage of the
configured pipeline, or the default policies); writes ``report.json``, ``guardrails.png`` and
``content_safety.png``. With the shipped sets (``--shipped``, split ``test``) it also measures
``content_safety`` per hazard category on the held-out harmful / benign requests, replies and
streams (``gateway.tools.eval_content_safety``: the configured ``content_safety`` policies alone;
there a flag counts as a detection).

The lead wires it with one line in ``gateway/cli.py``:
``eval_app.command("guardrails")(eval_guardrails)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from gateway.tools.eval_guardrails import Cell

__all__ = ["eval_guardrails"]

_DATA = Path(__file__).resolve().parents[1] / "data"


def _content(specs: list[Any], data_dir: Path, quick: bool, timing: dict[str, float]) -> list[Cell]:
    """The ``content_safety`` cells (``gateway.tools.eval_content_safety``): held-out harmful and
    benign requests, replies and streams through the configured ``content_safety`` policies
    alone (another policy's block would end the stage before them on some inputs, hiding what
    they find); a flag counts as a detection. Empty when none is configured."""
    from gateway.tools.eval_content_safety import DETECTED, content_cases, run_content_cases
    from gateway.tools.eval_guardrails import summarise
    from policies.pipeline import build_pipeline

    own = [s for s in specs if s.type == "content_safety"]
    if not own:
        return []
    cases = content_cases(data_dir)
    if quick:
        cases = cases[::5]
    outcomes, timing["content_ms_per_case"] = run_content_cases(build_pipeline(own), cases)
    return summarise("content", cases, outcomes, detected=DETECTED)


def _measure(
    config: Path | None, data_dir: Path, split: str, quick: bool, shipped: bool, seed: int
) -> dict[str, Any]:
    from gateway.tools.eval_content_safety import content_headline
    from gateway.tools.eval_guardrails import (
        bipia_cases,
        headline,
        parity,
        run_cases,
        shipped_cases,
        summarise,
    )
    from policies.pipeline import build_pipeline
    from policies.redteam import generate
    from rollguard.settings import default_policies, load_settings

    specs = load_settings(config).policies if config is not None else default_policies()
    pipeline = build_pipeline(specs)
    splits = ("dev", "test") if split == "all" else (split,)
    cells: list[Cell] = []
    timing: dict[str, float] = {}
    cases = [c for c in generate(seed) if c.split in splits]
    if quick:
        cases = cases[::5]
    outcomes, timing["redteam_ms_per_case"] = run_cases(pipeline, cases)
    cells += summarise("redteam", cases, outcomes)
    cells += parity(pipeline, cases, outcomes)
    if (data_dir / "bipia-indirect-injection").exists():
        bipia = [c for c in bipia_cases(data_dir, seed) if c.split in splits]
        outcomes, timing["bipia_ms_per_case"] = run_cases(pipeline, bipia)
        cells += summarise("bipia", bipia, outcomes)
    if shipped and "test" in splits:
        rows = shipped_cases(data_dir, limit=60 if quick else None, seed=seed)
        outcomes, timing["shipped_ms_per_case"] = run_cases(pipeline, rows)
        cells += summarise("shipped", rows, outcomes)
    content: dict[str, Any] = {}
    if shipped and "test" in splits and (data_dir / "xstest").exists():
        content_cells = _content(list(specs), data_dir, quick, timing)
        cells += content_cells
        content = content_headline(content_cells)
    return {
        "split": split,
        "seed": seed,
        "policies": pipeline.describe(),
        "headline": {s: headline(cells, s) for s in splits},
        "content_safety": content,
        "timing": {k: round(v, 3) for k, v in timing.items()},
        "cells": [c.to_dict() for c in cells],
    }


def _table(report: dict[str, Any]) -> str:
    lines = [
        f"{'source':8} {'split':5} {'family':26} {'category':22} {'metric':8} {'rate':>7} "
        f"{'95% CI':>17} {'n':>5}"
    ]
    for c in report["cells"]:
        metric = "recall" if c["metric"] == "recall" else "FP rate"
        low, high = c["ci95"]
        lines.append(
            f"{c['source']:8} {c['split']:5} {c['family'][:26]:26} {c['category'][:22]:22} {metric:8} "
            f"{c['rate']:7.3f} [{low:6.3f}, {high:6.3f}] {c['n']:5d}"
        )
    return "\n".join(lines)


def _plot(report: dict[str, Any], path: Path) -> None:
    """Per-family rates with their Wilson intervals: attacks (recall) and benign (FP rate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [c for c in report["cells"] if c["category"] == "*" and c["source"] != "content"]
    fig, axes = plt.subplots(1, 2, figsize=(13, max(3.0, 0.32 * len(rows))), constrained_layout=True)
    for ax, label, title in (
        (axes[0], "attack", "recall (attacks stopped)"),
        (axes[1], "benign", "false-positive rate"),
    ):
        sel = [c for c in rows if c["label"] == label]
        names = [f"{c['source']}/{c['split']}/{c['family']}" for c in sel]
        rates = [c["rate"] for c in sel]
        err = [[c["rate"] - c["ci95"][0] for c in sel], [c["ci95"][1] - c["rate"] for c in sel]]
        ax.barh(
            range(len(sel)), rates, xerr=err, color="#4c72b0" if label == "attack" else "#dd8452", capsize=3
        )
        ax.set_yticks(range(len(sel)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1 if label == "attack" else min(1.0, max(0.05, *(c["ci95"][1] * 1.1 for c in sel))))
        ax.set_title(title + " with 95 % Wilson intervals", fontsize=9)
        if label == "attack":
            ax.axvline(0.95, color="grey", linestyle="--", linewidth=0.8)
        else:
            ax.axvline(0.01, color="grey", linestyle="--", linewidth=0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _content_order(cell: dict[str, Any]) -> tuple[str, bool, int, str]:
    """Family, its ``*`` row first, then hazard codes in number order (S2 before S10)."""
    code = cell["category"].split(" ", 1)[0]
    number = int(code[1:]) if code[:1] == "S" and code[1:].isdigit() else 99
    return cell["family"], cell["category"] != "*", number, cell["category"]


def _plot_content(report: dict[str, Any], path: Path) -> None:
    """``content_safety`` per family: harmful recall per hazard category and benign
    false-positive rate per source, with their Wilson intervals (a flag counts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [c for c in report["cells"] if c["source"] == "content"]
    if not rows:
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, max(3.0, 0.2 * len(rows))), constrained_layout=True)
    for ax, label, title, goal in (
        (axes[0], "attack", "content_safety: harmful detected (recall)", 0.90),
        (axes[1], "benign", "benign flagged or blocked (FP rate)", 0.02),
    ):
        sel = sorted((c for c in rows if c["label"] == label), key=_content_order)
        names = [f"{c['family'].split('_')[1]}/{c['category']} (n={c['n']})" for c in sel]
        rates = [c["rate"] for c in sel]
        err = [[c["rate"] - c["ci95"][0] for c in sel], [c["ci95"][1] - c["rate"] for c in sel]]
        colour = "#4c72b0" if label == "attack" else "#dd8452"
        colours = ["#333333" if c["category"] == "*" else colour for c in sel]
        ax.barh(range(len(sel)), rates, xerr=err, color=colours, capsize=3)
        ax.set_yticks(range(len(sel)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1 if label == "attack" else min(1.0, max(0.05, *(c["ci95"][1] * 1.1 for c in sel))))
        ax.set_title(title + ", 95 % Wilson CI; dark: all", fontsize=9)
        ax.axvline(goal, color="grey", linestyle="--", linewidth=0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def eval_guardrails(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="config file (default: default policies)")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="report folder (JSON + PNG)")] = Path(
        "var/eval_guardrails"
    ),
    split: Annotated[str, typer.Option(help="dev | test (held out) | all")] = "test",
    data_dir: Annotated[Path, typer.Option("--data", help="shared data sets folder")] = _DATA,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the JSON report instead of the table")
    ] = False,
    quick: Annotated[
        bool, typer.Option(help="a fifth of the red-team set, 60 shipped rows per family")
    ] = False,
    shipped: Annotated[bool, typer.Option(help="also the held-out part of the shipped sets")] = True,
    seed: Annotated[int, typer.Option(help="red-team generation seed")] = 0,
) -> None:
    """Measure the guardrails: per family and category recall / false-positive rate with 95 %
    Wilson intervals, on the generated red-team set, BIPIA and the shipped sets."""
    if split not in ("dev", "test", "all"):
        typer.echo("--split must be dev, test or all", err=True)
        raise typer.Exit(2)
    report = _measure(config, data_dir, split, quick, shipped, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    _plot(report, out_dir / "guardrails.png")
    _plot_content(report, out_dir / "content_safety.png")
    if as_json:
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
    else:
        typer.echo(_table(report))
        pngs = f"{out_dir / 'guardrails.png'} and {out_dir / 'content_safety.png'}"
        typer.echo(f"\nwrote {out_dir / 'report.json'}, {pngs}")
