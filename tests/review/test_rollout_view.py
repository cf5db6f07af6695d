"""The rollout console's view model, readable units and plot, from real judge records."""

from __future__ import annotations

import math
from pathlib import Path

from gateway.review import rollout_plot
from gateway.review.config import Priority
from gateway.review.items import ReviewItem
from gateway.review.rollout_pages import belongs, item_view, shown
from gateway.review.rollout_view import RolloutState, StaticRollouts, view_from_evidence

from . import rollout_fixture as F


def test_view_from_evidence_takes_each_steps_last_record() -> None:
    recs = F.records_breach()
    early = {**recs[1], "outcome": "inconclusive", "action": "wait", "reason": "min_samples"}
    v = view_from_evidence(
        "r1", F.plan(), state=RolloutState.ROLLED_BACK, step=1, step_started_ms=1_000, now_ms=62_500,
        records=[recs[0], early, recs[1]], percent=0.0,
    )  # fmt: skip
    assert v.percent == 0.0 and v.next_percent == 25.0 and v.steps == (1.0, 5.0, 25.0, 50.0, 100.0)
    assert v.time_in_step_s == 61.5
    assert (v.outcome, v.reason, v.metric) == ("fail", "guardrail_breach", "refusal_rate")
    assert v.history == ((0, "pass", "passed"), (1, "fail", "guardrail_breach"))
    refusal = v.metrics[0]
    assert [p.step for p in refusal.points] == [0, 1] and [p.status for p in refusal.points] == [
        "no_breach",
        "fail",
    ]
    cur = refusal.current
    assert cur is not None and cur.canary_n == 600 and math.isclose(cur.canary_mean or 0, 0.12)
    assert cur.lower is not None and cur.tolerance is not None and cur.lower > cur.tolerance
    assert v.srm is not None and v.srm.control == 12_000 and v.srm.canary == 600 and not v.srm.mismatch
    assert v.plan_version == F.plan().version()


def test_view_without_records_and_srm_pause() -> None:
    v = view_from_evidence(
        "r0", F.plan(), state=RolloutState.PENDING, step=0, step_started_ms=0, now_ms=0, records=[]
    )
    assert v.outcome is None and v.srm is None and all(m.current is None for m in v.metrics)
    assert v.percent == 1.0 and v.next_percent == 5.0 and not v.awaiting_approval
    rec = {**F.records_passing()[0], "reason": "srm", "outcome": "inconclusive", "action": "pause"}
    v = view_from_evidence(
        "r0", F.plan(), state=RolloutState.PAUSED, step=0, step_started_ms=0, now_ms=0, records=[rec]
    )
    assert v.srm is not None and v.srm.mismatch


def test_shown_uses_points_and_length_percent() -> None:
    v = F.rolled_back()
    refusal, _hedging, length = (shown(m) for m in v.metrics)
    assert refusal["unit"] == "points" and refusal["canary"] == "12.00 %" and refusal["control"] == "2.00 %"
    assert refusal["effect"] == "10" and refusal["tolerance"] == "1"
    assert length["unit"] == "length change %" and length["tolerance"] == "15"
    assert length["effect"] == f"{100 * math.expm1(0.02):.3g}"


def test_svg_has_a_panel_per_metric_and_is_deterministic(tmp_path: Path) -> None:
    v = F.rolled_back()
    svg = rollout_plot.svg(v)
    assert svg.startswith("<svg")
    for m in v.metrics:
        assert f'id="metric-{m.name}"' in svg
    assert "refusal_rate (guardrail)" in svg  # text kept as text
    assert rollout_plot.svg(v) == svg
    empty = view_from_evidence(
        "r0", F.plan(), state=RolloutState.PENDING, step=0, step_started_ms=0, now_ms=0, records=[]
    )
    assert "no data yet" in rollout_plot.svg(empty)
    out = rollout_plot.png(v, tmp_path / "a" / "plot.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _item(payload: dict[str, object], variant: str | None = None, verdicts: int = 0) -> ReviewItem:
    return ReviewItem(
        id="i1", queue="rollout", status="open", tenant="acme", source="anomaly", source_id="a",
        priority=Priority.P1, k=2, created_ms=5, claim_by_ms=0, decide_by_ms=0, payload=payload,
        detectors=[], variant=variant, model=None,
        verdicts={f"r{i}": {"label": "over_refusal"} for i in range(verdicts)},
    )  # fmt: skip


def test_belongs_and_item_view() -> None:
    v = F.awaiting()
    assert belongs(_item({"anomaly": {"rollout_id": "chat-v2"}}), v)
    assert belongs(_item({"flags": {"variants": {"model-rollout": "canary"}}}, "control"), v)
    assert not belongs(_item({"flags": {"variants": {"model-rollout": "control"}}}, "canary"), v)
    assert not belongs(_item({"flags": {"variants": {"other-flag": "canary"}}}, "canary"), v)
    assert belongs(_item({"anomaly": {}}, "canary"), v)
    assert not belongs(_item({"anomaly": {"rollout_id": "x"}}, "control"), v)
    it = _item({}, verdicts=1)
    shown_ = item_view(it, show_verdicts=True)
    assert shown_.verdicts == (("r0", "over_refusal"),) and not shown_.hidden
    blind = item_view(it, show_verdicts=False)
    assert blind.verdicts == () and blind.hidden and blind.verdict_count == 1
    assert blind.url == "/review/queues/rollout/items/i1"


async def test_static_rollouts() -> None:
    src = StaticRollouts([F.awaiting()])
    src.put(F.rolled_back())
    assert [v.id for v in await src.list_rollouts()] == ["chat-v2", "chat-v3"]
    assert await src.get_rollout("nope") is None
