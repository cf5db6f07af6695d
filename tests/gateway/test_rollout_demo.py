"""``rollguard demo --scenario rollout``: the regressed canary from the shipped data is caught at
an early step and rolled back, a P1 review item carries the evidence (real Redis), and the report,
its plot and the evidence records are written; the evidence reproduces offline."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from rich.console import Console
from typer.testing import CliRunner

from detectors.rollout_judge import judge_step, step_data_of
from gateway.cli import app
from gateway.demo import rollout_scenario as S
from gateway.review.config import parse_review_settings
from gateway.review.demo import demo_review_config
from gateway.review.service import ReviewService
from rollguard.rollout import default_plan


def test_regressed_arms_are_deterministic_and_regressed_as_described() -> None:
    control, canary = S.regressed_arms(seed=3)
    assert len(control) == len(canary) == 1760
    kinds = Counter(r["regression"] for r in canary)
    assert kinds["over_refusal"] == round(S.OVER_REFUSAL_SHARE * 1760)
    assert kinds["sycophancy"] == round(S.SYCOPHANCY_SHARE * 1760)
    longer = [r for r in canary if r["regression"] == "longer"]
    chars = {c["id"].removeprefix("ctl-"): len(c["completion"]) for c in control}
    ratios = [len(r["completion"]) / n for r in longer if (n := chars[r["id"].removeprefix("can-")]) >= 100]
    assert len(ratios) > 1400 and min(ratios) > 1.29 and max(ratios) <= 1.3  # 1.3x, rounded down
    assert all(r["completion"].startswith(S.FLATTERY) for r in canary if r["regression"] == "sycophancy")
    assert S.regressed_arms(seed=3) == (control, canary)
    assert all(r["flags"]["variants"]["model-rollout"] == "canary" for r in canary)


def test_unknown_scenario_is_refused_with_one_line() -> None:
    res = CliRunner().invoke(app, ["demo", "--scenario", "nope"])
    assert res.exit_code == 2
    # a choice list (issue 12): the refusal names the value and the choices, in one error line
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert "'--scenario'" in errors[0] and "'nope'" in errors[0]
    assert "'traffic'" in errors[0] and "'rollout'" in errors[0]


@pytest.mark.integration
def test_rollout_demo_rolls_back_opens_item_and_writes_report(tmp_path: Path, redis_url: str) -> None:
    console = Console(record=True, width=200)
    assert S.run_rollout_demo(tmp_path, console=console, redis_url=redis_url) == 0
    printed = console.export_text()
    dest = tmp_path / "rollout-demo"
    assert f"report: {dest / 'report.md'}" in printed

    evidence = [json.loads(line) for line in (dest / "evidence.jsonl").read_text().splitlines()]
    last = evidence[-1]
    assert last["action"] == "rollback" and last["reason"] == "guardrail_breach"
    assert last["step"] <= 1  # caught at an early step (1 % or 5 %)
    assert set(last["failed"]) & {"refusal_rate", "sycophancy_rate"}
    plan = default_plan().model_copy(
        update={"metrics": tuple(m for m in default_plan().metrics if m.name != "latency_p95_ms")}
    )
    assert plan.version() == last["plan_version"]
    assert judge_step(plan, step_data_of(last)).to_dict() == last  # reproducible offline

    report = (dest / "report.md").read_text()
    assert "**Outcome: rolled back**" in report and "The canary is at 0 %" in report
    assert "](rollout-metrics.png)" in report and "priority **P1**" in report
    assert (dest / "rollout-metrics.png").read_bytes()[:4] == b"\x89PNG"

    item_id = report.split("item `")[1].split("`")[0]

    async def item() -> dict[str, object]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            svc = ReviewService(parse_review_settings(demo_review_config()), client)
            it = await svc.queues.get_item("rollout", item_id)
            assert it is not None
            return {"priority": it.priority.value, "status": it.status, "payload": it.payload}
        finally:
            await client.aclose()

    got = asyncio.run(item())
    assert got["priority"] == "P1" and got["status"] == "open"
    payload = got["payload"]
    assert isinstance(payload, dict)
    assert payload["anomaly"]["rollout_id"] == S.ROLLOUT_ID
    assert payload["anomaly"]["metric"] == last["metric"]
    assert payload["comparison"] is not None  # the sycophantic canary reply next to the control's
