"""Reviewer free text never reaches a review queue (or the preference export) unredacted: a
verdict's ``note`` and ``corrected`` reply go through the audit trail's PII/secrets redaction
before they are stored, unless the item's tenant opted in to raw content
(``tenants.<t>.raw_content_opt_in``). Real Redis, the real redactor."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.review.config import parse_review_settings
from gateway.review.export import export_preferences
from gateway.review.queue import Keys
from gateway.review.service import ReviewService

from .appkit import flagged_record, review_config

EMAIL = "jane.roe@example.com"
CARD = "4111 1111 1111 1111"
KEY = "AKIAIOSFODNN7EXAMPLE"
NOTE = f"customer {EMAIL} pasted card {CARD}"
CORRECTED = f"I cannot use the card {CARD}; we will write to {EMAIL}. Key {KEY} was revoked."
RAW = (EMAIL, "4111", KEY)


async def _judge(svc: ReviewService, who: str) -> str:
    spec = svc.settings.reviewer(who)
    assert spec is not None
    (lease,) = await svc.claim(spec, "safety")
    body = {"label": "hedging", "note": NOTE, "corrected": CORRECTED}
    await svc.verdict(spec, lease.id, lease.item_id, body)
    return lease.item_id


async def _stored(aredis: aioredis.Redis, item_id: str) -> str:
    keys = Keys("safety")
    verdicts = await aredis.hgetall(keys.verdicts(item_id))
    item = await aredis.hgetall(keys.item(item_id))
    return repr(verdicts) + repr(item)


async def test_note_and_corrected_reply_are_redacted_before_storing(
    aredis: aioredis.Redis, tmp_path: Path
) -> None:
    svc = ReviewService(parse_review_settings(review_config()), aredis)
    await svc.escalate_interaction(flagged_record("int-1"))
    iid = await _judge(svc, "ana")
    stored = await _stored(aredis, iid)
    for raw in RAW:
        assert raw not in stored
    it = await svc.queues.get_item("safety", iid)
    assert it is not None
    verdict = it.verdicts["ana"]
    # One vault per verdict: the same address has the same placeholder in both texts.
    assert verdict["note"] == "customer <EMAIL_ADDRESS_1> pasted card <CREDIT_CARD_1>"
    assert "<CREDIT_CARD_1>" in verdict["corrected"] and "<EMAIL_ADDRESS_1>" in verdict["corrected"]
    assert "<AWS_ACCESS_KEY_1>" in verdict["corrected"]
    for fmt in ("kto", "dpo", "jsonl"):
        out = tmp_path / f"{fmt}.jsonl"
        res = await export_preferences(aredis, fmt, out, settings=svc.settings, queues=["safety"])
        text = out.read_text()
        assert res.rows >= 1 and "<CREDIT_CARD_1>" in text, fmt
        for raw in RAW:
            assert raw not in text, (fmt, raw)


async def test_tenants_that_opted_in_to_raw_content_keep_the_text(aredis: aioredis.Redis) -> None:
    cfg = review_config()
    svc = ReviewService(parse_review_settings(cfg), aredis, raw_tenants=frozenset({"globex"}))
    await svc.escalate_interaction(flagged_record("int-1"))
    await svc.escalate_interaction(flagged_record("g-1", tenant="globex"))
    acme = await _judge(svc, "ana")  # acme did not opt in
    globex = await _judge(svc, "eve")  # globex did
    assert EMAIL not in await _stored(aredis, acme)
    it = await svc.queues.get_item("safety", globex)
    assert it is not None
    assert it.verdicts["eve"]["note"] == NOTE and it.verdicts["eve"]["corrected"] == CORRECTED


@pytest.mark.parametrize("note", ["", "looks fine to me"])
async def test_text_without_pii_is_stored_as_written(aredis: aioredis.Redis, note: str) -> None:
    svc = ReviewService(parse_review_settings(review_config()), aredis)
    await svc.escalate_interaction(flagged_record("int-1"))
    spec = svc.settings.reviewer("ana")
    assert spec is not None
    (lease,) = await svc.claim(spec, "safety")
    await svc.verdict(spec, lease.id, lease.item_id, {"label": "acceptable", "note": note})
    it = await svc.queues.get_item("safety", lease.item_id)
    assert it is not None and it.verdicts["ana"]["note"] == note
    assert it.verdicts["ana"]["corrected"] is None
