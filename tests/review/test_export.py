"""Must-hold 5 of issue 4: the preference export loads with the ``datasets`` library, in TRL's
shapes, with provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from gateway.review.config import parse_review_settings
from gateway.review.export import export_preferences
from gateway.review.service import ReviewService
from rollguard.errors import InvalidRequest

from .appkit import flagged_record, review_config


def _anomaly(n: int, canary_reply: str, control_reply: str) -> dict[str, Any]:
    prompt = [{"role": "user", "content": f"Question {n}: is it safe to mix bleach and vinegar?"}]
    sides = []
    for variant, reply in (("canary", canary_reply), ("control", control_reply)):
        rec = flagged_record(f"{variant}-{n}", variant=variant, completion=reply)
        rec.update(messages=prompt, decisions=[], signals={})
        sides.append(rec)
    return {
        "id": f"anom-{n}",
        "detector": "sycophancy",
        "severity": "high",
        "tenant": "acme",
        "variant": "canary",
        "model": "demo-chat",
        "exemplars": sides,
    }


async def _decide(svc: ReviewService, queue: str, reviewer: str, body: dict[str, Any]) -> int:
    spec = svc.settings.reviewer(reviewer)
    assert spec is not None
    n = 0
    while leases := await svc.claim(spec, queue, count=50):
        for le in leases:
            await svc.verdict(spec, le.id, le.item_id, body)
            n += 1
    return n


async def _seed(aredis: aioredis.Redis) -> ReviewService:
    svc = ReviewService(parse_review_settings(review_config()), aredis)
    # Pairwise: 3 anomalies in the k=2 rollout queue, both reviewers prefer control.
    for n in range(3):
        await svc.escalate_anomaly(
            _anomaly(n, "Great question! Probably fine.", "No: it releases chlorine gas.")
        )
    for who in ("ana", "ben"):
        await _decide(svc, "rollout", who, {"label": "sycophancy", "preference": "control"})
    # Single verdicts with a history (system + user) and a corrected reply on one of them.
    await svc.escalate_interaction(flagged_record("int-1"))
    await svc.escalate_interaction(flagged_record("int-2"))
    spec = svc.settings.reviewer("ana")
    assert spec is not None
    leases = await svc.claim(spec, "safety", count=2)
    await svc.verdict(
        spec,
        leases[0].id,
        leases[0].item_id,
        {"label": "hedging", "corrected": "Open Settings > Security > Reset password."},
    )
    await svc.verdict(spec, leases[1].id, leases[1].item_id, {"label": "acceptable"})
    return svc


def _load(path: Path, cache: Path) -> Any:
    datasets = pytest.importorskip("datasets")
    return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))


async def test_dpo_export_loads_as_conversational_preference_dataset(
    aredis: aioredis.Redis, tmp_path: Path
) -> None:
    await _seed(aredis)
    res = await export_preferences(aredis, "dpo", tmp_path / "dpo.jsonl")
    assert res.rows == 4 and res.conversational  # 3 pairs + 1 correction
    ds = _load(res.path, tmp_path / "cache")
    assert set(ds.column_names) == {"prompt", "chosen", "rejected", "provenance"}
    kinds = sorted(row["provenance"]["kind"] for row in ds)
    assert kinds == ["correction", "pairwise", "pairwise", "pairwise"]
    for row in ds:
        assert row["prompt"][-1]["role"] == "user"
        assert row["chosen"][0]["role"] == "assistant" and row["rejected"][0]["role"] == "assistant"
        if row["provenance"]["kind"] == "pairwise":
            assert row["chosen"][0]["content"].startswith("No: it releases")
            assert row["provenance"]["variant"] == "control"
            assert row["provenance"]["reviewer_count"] == 2
            assert row["provenance"]["agreement"] == 1.0
        else:
            assert row["chosen"][0]["content"].startswith("Open Settings")
            assert [m["role"] for m in row["prompt"]] == ["system", "user"]
            assert row["provenance"]["detectors"] == ["hedging", "pii"]


async def test_kto_and_sft_exports(aredis: aioredis.Redis, tmp_path: Path) -> None:
    await _seed(aredis)
    kto = await export_preferences(aredis, "kto", tmp_path / "kto.jsonl")
    ds = _load(kto.path, tmp_path / "cache")
    assert set(ds.column_names) == {"prompt", "completion", "label", "provenance"}
    assert ds.features["label"].dtype == "bool"
    by_kind: dict[str, list[bool]] = {}
    for row in ds:
        by_kind.setdefault(row["provenance"]["kind"], []).append(row["label"])
    assert sorted(by_kind["pairwise"]) == [False, False, False, True, True, True]
    assert by_kind["correction"] == [True]
    assert sorted(by_kind["verdict"]) == [False, True]  # hedging, acceptable (anomalies: pairwise rows)
    sft = await export_preferences(aredis, "jsonl", tmp_path / "sft.jsonl")
    ds = _load(sft.path, tmp_path / "cache")
    assert set(ds.column_names) == {"messages", "provenance"}
    assert [m["role"] for m in ds[0]["messages"]] == ["system", "user", "assistant"]
    assert ds[0]["messages"][-1]["content"].startswith("Open Settings")


async def test_standard_form_without_history_and_bad_format(aredis: aioredis.Redis, tmp_path: Path) -> None:
    svc = ReviewService(parse_review_settings(review_config()), aredis)
    rec = flagged_record("solo")
    rec["messages"] = rec["messages"][1:]
    await svc.escalate_interaction(rec)
    spec = svc.settings.reviewer("ben")
    assert spec is not None
    (le,) = await svc.claim(spec, "safety")
    await svc.verdict(spec, le.id, le.item_id, {"label": "verbosity", "corrected": "Use Settings."})
    res = await export_preferences(aredis, "dpo", tmp_path / "std.jsonl", settings=svc.settings)
    row = orjson.loads(res.path.read_bytes().splitlines()[0])
    assert not res.conversational
    assert isinstance(row["prompt"], str) and row["chosen"] == "Use Settings."
    with pytest.raises(InvalidRequest):
        await export_preferences(aredis, "csv", tmp_path / "x")  # type: ignore[arg-type]


async def test_export_from_settings_for_the_cli(
    aredis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    from gateway.review.export import export_from_settings
    from rollguard.settings import RollguardSettings

    await _seed(aredis)
    settings = RollguardSettings(review=review_config(), store={"redis_url": redis_url, "data_dir": tmp_path})
    res = await export_from_settings(settings, "kto", tmp_path / "cli.jsonl")
    assert res.rows == 9 and len((tmp_path / "cli.jsonl").read_bytes().splitlines()) == 9


def _input_only(rid: str) -> dict[str, Any]:
    """A PII flag on the prompt (pre_call) and a harmless reply with no flagged signal."""
    rec = flagged_record(rid, completion="You can reset it under Settings > Security.")
    rec["signals"] = {"hedging": {"score": 0.1, "flagged": False, "evidence": []}}
    return rec


def _output_side(rid: str, stage: str) -> dict[str, Any]:
    """The same prompt, but the policy flagged the reply (post_call / stream)."""
    rec = _input_only(rid)
    rec["decisions"] = [
        dict(
            rec["decisions"][0],
            stage=stage,
            evidence=[dict(rec["decisions"][0]["evidence"][0], location="completion", start=0, end=3)],
        )
    ]
    return rec


async def test_kto_label_is_about_the_completion_not_an_input_side_flag(
    aredis: aioredis.Redis, tmp_path: Path
) -> None:
    cfg = review_config()
    cfg["taxonomy"] = [
        *[lab.model_dump() for lab in parse_review_settings({}).taxonomy],
        {"id": "pii_exposure", "title": "PII exposure", "key": "9"},  # custom: judges the alert
    ]
    svc = ReviewService(parse_review_settings(cfg), aredis)
    cases = {
        "in-violation": (_input_only("in-violation"), "policy_violation", None),
        "in-custom": (_input_only("in-custom"), "pii_exposure", None),
        "in-acceptable": (_input_only("in-acceptable"), "acceptable", True),
        "in-hedging": (_input_only("in-hedging"), "hedging", False),
        "out-post": (_output_side("out-post", "post_call"), "policy_violation", False),
        "out-stream": (_output_side("out-stream", "stream"), "pii_exposure", False),
    }
    for rec, _label, _want in cases.values():
        await svc.escalate_interaction(rec)
    spec = svc.settings.reviewer("ana")
    assert spec is not None
    leases = await svc.claim(spec, "safety", count=10)
    assert len(leases) == len(cases)
    for le in leases:
        item = await svc.queues.get_item("safety", le.item_id)
        assert item is not None
        await svc.verdict(spec, le.id, le.item_id, {"label": cases[item.source_id][1]})
    res = await export_preferences(aredis, "kto", tmp_path / "kto.jsonl", settings=svc.settings)
    rows = [orjson.loads(line) for line in res.path.read_bytes().splitlines()]
    got = {row["provenance"]["source_id"]: row["label"] for row in rows}
    assert got == {sid: want for sid, (_r, _l, want) in cases.items() if want is not None}
    assert res.skipped == 2 and res.rows == 4
    for row in rows:
        assert row["completion"][0]["content"] == "You can reset it under Settings > Security."
