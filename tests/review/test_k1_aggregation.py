"""Issue 8 item 7: in a k=1 queue (one reviewer per item) every verdict keeps its label. Before the
fix Dawid-Skene ran on single verdicts and replaced each minority label by the majority class
(hedging, refusal, evasion, sycophancy came out ``acceptable``), the KTO export marked those
replies desirable, and decided items went to adjudication."""

from __future__ import annotations

from pathlib import Path

import orjson
import redis.asyncio as aioredis

from gateway.review.config import parse_review_settings
from gateway.review.export import export_preferences
from gateway.review.service import ReviewService

from .appkit import flagged_record, review_config

SHORTCUTS = ("hedging", "refusal", "evasion", "sycophancy")


async def _seed_k1(svc: ReviewService) -> dict[str, str]:
    """12 single verdicts in the k=1 ``safety`` queue: 8 acceptable (the majority class) and one
    each of the four shortcut labels. Returns item id -> the label given."""
    labels = ["acceptable"] * 8 + list(SHORTCUTS)
    for n in range(len(labels)):
        await svc.escalate_interaction(flagged_record(f"k1-{n}"))
    ana = svc.settings.reviewer("ana")
    assert ana is not None
    leases = await svc.claim(ana, "safety", count=50)
    assert len(leases) == len(labels)
    given: dict[str, str] = {}
    for le, label in zip(leases, labels, strict=True):
        await svc.verdict(ana, le.id, le.item_id, {"label": label})
        given[le.item_id] = label
    return given


async def test_k1_single_verdicts_keep_their_labels(aredis: aioredis.Redis) -> None:
    svc = ReviewService(parse_review_settings(review_config()), aredis)
    given = await _seed_k1(svc)
    assert svc.settings.k_for("safety") == 1
    agg = await svc.aggregate("safety")
    assert agg == {}  # no overlap: Dawid-Skene does not run
    assert await svc.queues.open_items("adjudication") == []
    items = await svc.window_items("safety")
    finals = {it.id: svc.final_label(it, agg) for it in items}
    assert finals == given
    assert sorted(str(lab) for lab in finals.values() if lab != "acceptable") == sorted(SHORTCUTS)


async def test_k1_kto_export_marks_shortcut_replies_undesirable(
    aredis: aioredis.Redis, tmp_path: Path
) -> None:
    svc = ReviewService(parse_review_settings(review_config()), aredis)
    given = await _seed_k1(svc)
    res = await export_preferences(aredis, "kto", tmp_path / "kto.jsonl", settings=svc.settings)
    rows = [orjson.loads(line) for line in res.path.read_bytes().splitlines()]
    by_label: dict[str, list[bool]] = {}
    for row in rows:
        prov = row["provenance"]
        assert prov["label"] == given[prov["item_id"]]
        by_label.setdefault(prov["label"], []).append(row["label"])
    assert by_label["acceptable"] == [True] * 8
    for label in SHORTCUTS:
        assert by_label[label] == [False], label
