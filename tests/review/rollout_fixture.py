"""Rollout view models for the console tests, built from real judge outputs (``judge_step`` on
synthetic step data), so the pages render what the controller will feed them."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from detectors.rollout_judge import MetricData, Moments, StepData, judge_step
from gateway.review.config import parse_review_settings
from gateway.review.rollout_view import RolloutState, RolloutView, view_from_evidence
from gateway.review.service import ReviewService
from rollguard.rollout import MetricSpec, RolloutPlan, default_plan

from .appkit import flagged_record, review_config

T0_MS = 1_760_000_000_000


def plan() -> RolloutPlan:
    """The default plan with three metrics: refusal (guardrail), hedging and reply length (signals)."""
    return default_plan().model_copy(
        update={
            "metrics": (
                MetricSpec(name="refusal_rate", tolerance=0.01, kind="guardrail"),
                MetricSpec(name="hedging_rate", tolerance=0.02, kind="signal"),
                MetricSpec(
                    name="reply_length_ratio", tolerance=0.15, tolerance_type="relative", kind="signal"
                ),
            )
        }
    )


def _data(step: int, n_ctrl: int, n_can: int, refusals_can: int) -> StepData:
    lc, lk = 6.0, 6.02
    return StepData(
        step=step,
        assigned_control=n_ctrl,
        assigned_canary=n_can,
        metrics={
            "refusal_rate": MetricData(
                Moments(n_ctrl, 0.02 * n_ctrl, 0.02 * n_ctrl), Moments(n_can, refusals_can, refusals_can)
            ),
            "hedging_rate": MetricData(
                Moments(n_ctrl, 0.01 * n_ctrl, 0.01 * n_ctrl), Moments(n_can, 0.01 * n_can, 0.01 * n_can)
            ),
            "reply_length_ratio": MetricData(
                Moments(n_ctrl, lc * n_ctrl, (lc * lc + 0.5) * n_ctrl),
                Moments(n_can, lk * n_can, (lk * lk + 0.5) * n_can),
            ),
        },
        elapsed_s=900.0,
        data_age_s=3.0,
        flag_snapshot={"flag": "model-rollout"},
    )


def records_passing() -> list[dict[str, Any]]:
    """Two passed steps (1 % and 5 %): the rollout awaits approval of the 5 % step."""
    p = plan()
    return [
        judge_step(p, _data(0, 99_000, 1_000, 20)).to_dict(),
        judge_step(p, _data(1, 19_000, 1_000, 21)).to_dict(),
    ]


def records_breach() -> list[dict[str, Any]]:
    """A passed 1 % step, then a 5 % step whose canary refuses 12 % of the time: rollback."""
    p = plan()
    return [
        judge_step(p, _data(0, 99_000, 1_000, 20)).to_dict(),
        judge_step(p, _data(1, 12_000, 600, 72)).to_dict(),
    ]


def awaiting() -> RolloutView:
    recs = records_passing()
    assert [r["outcome"] for r in recs] == ["pass", "pass"]
    return view_from_evidence(
        "chat-v2",
        plan(),
        state=RolloutState.AWAITING_APPROVAL,
        step=1,
        step_started_ms=T0_MS,
        now_ms=T0_MS + 930_000,
        records=recs,
        evidence_id="1760000930000-0",
    )


def rolled_back() -> RolloutView:
    recs = records_breach()
    assert recs[-1]["action"] == "rollback"
    return view_from_evidence(
        "chat-v3",
        plan(),
        state=RolloutState.ROLLED_BACK,
        step=1,
        step_started_ms=T0_MS,
        now_ms=T0_MS + 61_000,
        records=recs,
        percent=0.0,
    )


def seed_items(redis_url: str, tag: str) -> dict[str, str]:
    """A breach item naming rollout chat-v2 (decided by ana: one verdict of k=2, so still open), a
    canary interaction, and a control interaction that must not be listed."""

    async def run() -> dict[str, str]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            svc = ReviewService(parse_review_settings(review_config()), client)
            bundle = {
                "id": f"rollout-chat-v2-{tag}",
                "rollout_id": "chat-v2",
                "detector": "rollout_judge",
                "severity": "critical",
                "tenant": "acme",
                "variant": "canary",
            }
            breach = (await svc.escalate_anomaly(bundle))[0].item_id
            canary = (await svc.escalate_interaction(flagged_record(f"can-{tag}", variant="canary")))[0]
            control = (await svc.escalate_interaction(flagged_record(f"ctl-{tag}", variant="control")))[0]
            ana = svc.settings.reviewer("ana")
            assert ana is not None
            for le in await svc.claim(ana, "rollout", count=50):
                if le.item_id == breach:
                    await svc.verdict(ana, le.id, le.item_id, {"label": "refusal"})
                else:
                    await svc.release(ana, le.id, le.item_id)
            return {"breach": breach, "canary": canary.item_id, "control": control.item_id}
        finally:
            await client.aclose()

    return asyncio.run(run())
