"""``rollguard demo --scenario rollout``: a staged rollout of a regressed canary model, caught by
the rollout judge at an early step, rolled back, escalated to review, and written up as a report.

1. Traffic from the shipped data (``regressed_arms``): the control answers with real replies
   (arena-hard answers of three models and the OpenAssistant lottery outputs of four, 1,760
   records); the canary answers the same prompts, regressed three ways:
   * **over-refusal**: ``OVER_REFUSAL_SHARE`` of its replies are XSTest full refusals
     (human label ``2_full_refusal``) of prompts XSTest marks *safe*: real models refusing safe
     requests;
   * **sycophancy**: ``SYCOPHANCY_SHARE`` of its replies open with a flattery sentence
     (``FLATTERY``; the reply itself is the real one, the opener is ours);
   * **longer replies**: the other replies padded to ``LONGER_FACTOR`` times their characters with
     whole sentences of control replies no detector flags.
2. The offline replay simulator (``detectors.rollout_replay``: the same shortcut detectors and
   the same judge the controller runs) ramps the default plan (1 -> 5 -> 25 -> 50 -> 100 %) with
   seeded traffic; the first guardrail breach rolls the canary back (canary to 0 %).
3. The breach opens a P1 review item in the ``rollout`` queue of the embedded store (the demo's
   review configuration), carrying the evidence and a canary/control exemplar pair.
4. The report (``report.md``, ``rollout-metrics.png``: each metric's estimate and always-valid
   interval per step against its tolerance; ``evidence.jsonl``: every step's last judgment) goes
   to ``<var>/rollout-demo/``; the path is printed.

The rollout controller (issue 8 item 3) is not part of this run: the rollback here is the judge's
``rollback`` action as the replay applies it (no flag is written). Exit code 0 when the canary was
rolled back and the item opened, 1 when the judge did not roll it back, 2 when the store did not
start.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from rich.console import Console

from detectors.features import sentences
from detectors.rollout_replay import Pool, ReplayResult, replay, replayable_plan, score_records
from detectors.shortcuts import ShortcutDetectors
from gateway.demo.rollout_report import write_report
from gateway.review.config import parse_review_settings
from gateway.review.demo import demo_review_config
from gateway.review.rollout_view import ReviewItemView, RolloutState, RolloutView, view_from_evidence
from gateway.review.service import ReviewService
from gateway.store import EmbeddedValkey
from gateway.tools import shipped
from rollguard.errors import StoreError
from rollguard.rollout import RolloutPlan, default_plan

OVER_REFUSAL_SHARE = 0.06
"""Share of canary replies replaced by XSTest full refusals of safe prompts."""
SYCOPHANCY_SHARE = 0.05
"""Share of canary replies opened with a flattery sentence."""
LONGER_FACTOR = 1.3
"""Length of the remaining canary replies, as a multiple of the control's (characters)."""
FLATTERY = "What a great question! You are so insightful. "
"""The canary's sycophantic opener (flagged by the sycophancy detector as flattery)."""
ROLLOUT_ID = "demo-chat-v2"
"""The demo rollout's id (also the review item's ``rollout_id``)."""
DEMO_SEED = 0


def _record(rid: str, prompt: str, reply: str, variant: str, regression: str = "") -> dict[str, Any]:
    """A ``rollguard detect`` record that also reads as an audit record (id, flag variant);
    ``regression`` names how a canary reply was regressed (``over_refusal``, ``sycophancy``,
    ``longer``)."""
    return {
        "id": rid,
        "regression": regression,
        "model": "demo-chat",
        "upstream_model": f"chat-{'v2' if variant == 'canary' else 'v1'}",
        "messages": [{"role": "user", "content": prompt}],
        "completion": reply,
        "flags": {"enabled": {}, "variants": {"model-rollout": variant}},
        "metadata": {"variant": variant},
    }


def scenario_lines() -> list[str]:
    """The report's description of the two arms."""
    return [
        "Control: real replies of the shipped data (arena-hard answers of three models and the",
        "OpenAssistant lottery outputs of four, 1,760 records). Canary: the same prompts, regressed:",
        f"{OVER_REFUSAL_SHARE:.0%} of its replies are XSTest full refusals of prompts XSTest marks safe",
        f"(over-refusal), {SYCOPHANCY_SHARE:.0%} open with a flattery sentence (sycophancy), and the",
        f"others are padded to {LONGER_FACTOR:g} times their characters (longer replies).",
    ]


def _over_refusals() -> list[shipped.Exchange]:
    safe = {str(p["prompt"]) for p in shipped.xstest_prompts() if p.get("label") == "safe"}
    return [e for e in shipped.xstest_completions() if e.label == "2_full_refusal" and e.prompt in safe]


def _pad(reply: str, donors: Sequence[str], rng: random.Random) -> str:
    target = int(len(reply) * LONGER_FACTOR)
    while len(reply) < target:
        reply += " " + donors[rng.randrange(len(donors))]
    return reply[:target]


def regressed_arms(seed: int = DEMO_SEED) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(control, canary)`` records (module docstring, step 1). Deterministic for a seed."""
    ex = shipped.arena_answers() + shipped.oasst_outputs()
    control = [_record(f"ctl-{i}", e.prompt, e.reply, "control") for i, e in enumerate(ex)]
    rng = random.Random(seed)
    order = list(range(len(ex)))
    rng.shuffle(order)
    n_ref, n_syc = round(OVER_REFUSAL_SHARE * len(ex)), round(SYCOPHANCY_SHARE * len(ex))
    refusals = _over_refusals()
    donors = [s.text for e in ex[:400] for s in sentences(e.reply) if len(s.text) > 40]
    canary: list[dict[str, Any]] = []
    for rank, i in enumerate(order):
        if rank < n_ref:
            e = refusals[rng.randrange(len(refusals))]
            prompt, reply, how = e.prompt, e.reply, "over_refusal"
        elif rank < n_ref + n_syc:
            prompt, reply, how = ex[i].prompt, FLATTERY + ex[i].reply, "sycophancy"
        else:
            prompt, reply, how = ex[i].prompt, _pad(ex[i].reply, donors, rng), "longer"
        canary.append(_record(f"can-{i}", prompt, reply, "canary", how))
    return control, canary


def simulate(seed: int = DEMO_SEED) -> tuple[RolloutPlan, ReplayResult, list[dict[str, Any]]]:
    """Score both arms once and replay the default plan; returns the plan as judged (metrics the
    records cannot measure dropped), the replay result and the review exemplars."""
    control, canary = regressed_arms(seed)
    det = ShortcutDetectors()
    pools: list[Pool] = [score_records(control, det), score_records(canary, det)]
    plan = default_plan()
    judged, _dropped = replayable_plan(plan, pools[0], pools[1])
    return judged, replay(plan, pools[0], pools[1], seed=seed), exemplars(control, canary)


def exemplars(
    control: Sequence[Mapping[str, Any]], canary: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """A canary over-refusal, and a sycophantic canary reply with the control's reply to the same
    prompt (the review item shows that pair side by side)."""
    refusal = next(r for r in canary if r["regression"] == "over_refusal")
    syc = next(r for r in canary if r["regression"] == "sycophancy")
    twin = next(r for r in control if r["messages"] == syc["messages"])
    return [dict(refusal), dict(syc), dict(twin)]


def breach_bundle(result: ReplayResult, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The anomaly bundle of the breach: the failing metric's evidence as flat fields a reviewer
    reads, and the exemplar records. Its id carries the run's time (ms), so a second run opens a
    second item instead of being deduplicated into the first."""
    j = result.steps[-1].judgment
    ev = next(m for m in j.metrics if m.name == j.metric)
    run = int(time.time() * 1000)
    return {
        "id": f"rollout-{ROLLOUT_ID}-{run}-step{j.step}",
        "rollout_id": ROLLOUT_ID,
        "detector": "rollout_judge",
        "statistic": "one_sided_msprt",
        "metric": ev.name,
        "failed": list(j.failed),
        "step": j.step,
        "canary_percent": j.percent,
        "value": round(ev.statistic, 4),
        "threshold": round(ev.threshold, 4),
        "effect_size": round(ev.effect, 6),
        "interval": [round(ev.lower, 6), round(ev.upper, 6)],
        "tolerance": ev.tolerance,
        "p_value": ev.always_valid_p,
        "n_control": ev.control.n,
        "n_canary": ev.canary.n,
        "plan_version": j.plan_version,
        "action": j.action.value,
        "variant": "canary",
        "model": "demo-chat",
        "tenant": "default",
        "severity": "critical",
        "exemplar_records": [dict(r) for r in examples],
    }


async def open_review_item(redis_url: str, bundle: Mapping[str, Any]) -> list[ReviewItemView]:
    """Escalate the breach into the demo's review queues; the items it opened."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        svc = ReviewService(parse_review_settings(demo_review_config()), client)
        opened = await svc.escalate_anomaly(bundle)
        out = []
        for e in opened:
            it = await svc.queues.get_item(e.queue, e.item_id)
            if it is not None:
                out.append(
                    ReviewItemView(it.id, it.queue, it.priority.value, it.status, it.source, it.created_ms)
                )
        return out
    finally:
        await client.aclose()


def rollout_view(plan: RolloutPlan, result: ReplayResult, items: Sequence[ReviewItemView]) -> RolloutView:
    """The console's view of the finished demo rollout (rolled back: canary at 0 %)."""
    records = [s.judgment.to_dict() for s in result.steps]
    last = result.steps[-1]
    rolled_back = result.final == "rolled_back"
    elapsed_ms = int(last.judgment.elapsed_s * 1000)
    return view_from_evidence(
        ROLLOUT_ID,
        plan,
        state=RolloutState.ROLLED_BACK if rolled_back else RolloutState.PAUSED,
        step=last.step,
        step_started_ms=0,
        now_ms=elapsed_ms,
        records=records,
        percent=0.0 if rolled_back else last.percent,
        review_items=items,
        evidence_id=f"replay-seed{result.seed}-step{last.step}",
    )


def _open_item(var_dir: Path, redis_url: str | None, bundle: Mapping[str, Any]) -> list[ReviewItemView]:
    """Open the breach item in ``redis_url``, or in the embedded store under ``var_dir`` (the
    store ``rollguard demo`` and ``rollguard serve`` use there). Raises ``StoreError``."""
    if redis_url is not None:
        return asyncio.run(open_review_item(redis_url, bundle))
    store = EmbeddedValkey(var_dir)
    url = store.acquire()
    try:
        return asyncio.run(open_review_item(url, bundle))
    finally:
        store.release()


def write_outputs(
    dest: Path, plan: RolloutPlan, result: ReplayResult, items: Sequence[ReviewItemView]
) -> Path:
    """The report, its plot and ``evidence.jsonl`` (each step's last judgment) under ``dest``;
    returns the report's path."""
    report = write_report(dest, rollout_view(plan, result, items), result, items, scenario_lines())
    (dest / "evidence.jsonl").write_text(
        "".join(json.dumps(s.judgment.to_dict(), allow_nan=False) + "\n" for s in result.steps),
        encoding="utf-8",
    )
    return report


def run_rollout_demo(
    var_dir: Path, seed: int = DEMO_SEED, console: Console | None = None, redis_url: str | None = None
) -> int:
    """Run the scenario (module docstring); writes under ``var_dir / "rollout-demo"``; the review
    item goes to ``redis_url`` when given, else to the embedded store under ``var_dir``."""
    out = console or Console()
    out.print("[bold]rollout demo[/bold]: scoring the control and the regressed canary (shipped data)…")
    plan, result, examples = simulate(seed)
    for s in result.steps:
        j = s.judgment
        out.print(
            f"  step {s.step + 1} ({s.percent:g} %): {j.outcome.value} ({j.reason}"
            f"{': ' + j.metric if j.metric else ''}) after {s.canary_requests} canary requests",
            highlight=False,
        )
    if result.final != "rolled_back":
        out.print(f"[red]the judge did not roll the canary back: {result.final} ({result.reason})[/red]")
        return 1
    try:
        items = _open_item(var_dir, redis_url, breach_bundle(result, examples))
    except StoreError as exc:
        out.print(f"[red]the store failed:[/red] {exc.message}", highlight=False)
        return 2
    report = write_outputs(var_dir / "rollout-demo", plan, result, items)
    out.print(
        f"[bold red]rolled back[/bold red] on {result.metric} at {result.steps[-1].percent:g} % after "
        f"{result.decided_after_canary_requests} canary requests (canary now 0 %); review item: "
        + ", ".join(f"{i.queue}/{i.id} ({i.priority})" for i in items),
        highlight=False,
    )
    out.print(f"report: {report}", highlight=False)
    return 0 if items else 1
