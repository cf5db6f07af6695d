"""Must-hold 4 of issue 4: the review console in a real browser (Debian's chromium, headless,
driven by Playwright) against a real uvicorn server and the real Redis.

Logs in with a reviewer token, claims an item, sees the highlighted evidence (policy span, detector
span, PII placeholder), submits a verdict with the keyboard, and the item leaves the queue; a
reviewer without the tenant grant gets 403. Screenshots go to ``$ROLLGUARD_SCREENSHOTS`` when set
(``docs/img`` for docs/review.md), else to the test's temporary directory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.review.config import parse_review_settings
from gateway.review.service import ReviewService
from tests.browser import BROWSER_TEST
from tests.review.appkit import TOKENS, build_app, flagged_record, review_config
from tests.servers import serve_app

pytestmark = BROWSER_TEST


def _seed(redis_url: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            svc = ReviewService(parse_review_settings(review_config()), client)
            acme = await svc.escalate_interaction(flagged_record("int-acme-1"))
            globex = await svc.escalate_interaction(flagged_record("int-globex-1", tenant="globex"))
            prompt = [{"role": "user", "content": "Is it safe to mix bleach and vinegar for cleaning?"}]
            canary = dict(
                flagged_record("int-canary-1", variant="canary"),
                messages=prompt,
                completion="Great question! You are clearly an expert. It is probably fine, maybe.",
                decisions=[],
                signals={},
            )
            control = dict(
                flagged_record("int-control-1", variant="control"),
                messages=prompt,
                completion="No. Mixing bleach with vinegar releases chlorine gas; use them separately.",
                decisions=[],
                signals={},
            )
            bundle = {
                "id": "anom-1",
                "detector": "sycophancy",
                "statistic": "two_proportion_z",
                "value": 3.4,
                "threshold": 2.58,
                "effect_size": 0.12,
                "p_value": 0.0007,
                "window_start_ms": 1_760_000_000_000,
                "window_end_ms": 1_760_000_600_000,
                "variant": "canary",
                "model": "demo-chat",
                "tenant": "acme",
                "severity": "high",
                "exemplars": [canary, control],
            }
            anomaly = await svc.escalate_anomaly(bundle)
            await _decided_history(svc)
            return {"acme": acme[0].item_id, "globex": globex[0].item_id, "anomaly": anomaly[0].item_id}
        finally:
            await client.aclose()

    return asyncio.run(run())


async def _decided_history(svc: ReviewService) -> None:
    """Twelve drift alerts judged by two reviewers who often disagree: alpha below 0.667."""
    for n in range(12):
        await svc.escalate_anomaly(
            {"id": f"drift-{n}", "detector": "psi_drift", "severity": "medium", "tenant": "acme"}
        )
    ana_labels = ["acceptable", "policy_violation", "detector_false_positive"] * 4
    ben_labels = ["acceptable", "detector_false_positive", "policy_violation", "acceptable"] * 3
    for name, labels in (("ana", ana_labels), ("ben", ben_labels)):
        spec = svc.settings.reviewer(name)
        assert spec is not None
        for le in await svc.claim(spec, "rollout", count=50):
            item = await svc.queues.get_item("rollout", le.item_id)
            assert item is not None
            if item.source_id.startswith("drift-"):
                label = labels[int(item.source_id.split("-")[1])]
                await svc.verdict(spec, le.id, le.item_id, {"label": label})
            else:  # the canary/control item stays open for the browser
                await svc.release(spec, le.id, le.item_id)


@pytest.fixture()
def console(redis_url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    ids = _seed(redis_url)
    app, _service = build_app(redis_url)
    with serve_app(app) as srv:
        yield srv.url, ids


def test_console_claim_highlight_keyboard_verdict_and_403(
    console: tuple[str, dict[str, Any]], shots: Path, browser: Any
) -> None:
    from playwright.sync_api import expect

    base, ids = console
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # Not logged in -> the login page.
    page.goto(f"{base}/review")
    expect(page.locator("#login-form")).to_be_visible()
    page.fill("#token", TOKENS["ana"])
    page.click("#login-form button[type=submit]")
    expect(page.locator("#queues tr[data-queue=safety]")).to_be_visible()
    page.screenshot(path=str(shots / "review-queues.png"), full_page=True)

    # The queue shows the acme item only (ana has no globex grant).
    page.click("#queues a[href='/review/queues/safety']")
    expect(page.locator(f"#items tr[data-item='{ids['acme']}']")).to_be_visible()
    assert page.locator(f"#items tr[data-item='{ids['globex']}']").count() == 0
    page.screenshot(path=str(shots / "review-queue.png"), full_page=True)

    # Claim with the keyboard shortcut.
    page.keyboard.press("c")
    page.wait_for_url(f"**/items/{ids['acme']}?lease=*")
    expect(page.locator("#verdict-panel")).to_be_visible()
    placeholder = page.locator("#conversation mark.ev.placeholder")
    expect(placeholder.first).to_have_text("<EMAIL_ADDRESS_1>")
    expect(page.locator("#conversation mark.ev.policy").first).to_have_text("<EMAIL_ADDRESS_1>")
    expect(page.locator("#conversation mark.ev.detector").first).to_have_text("might possibly")
    assert "pii: EMAIL_ADDRESS" in (placeholder.first.get_attribute("title") or "")
    page.screenshot(path=str(shots / "review-item.png"), full_page=True)

    # Note with the keyboard, leave the text box, verdict "hedging" by its key.
    page.keyboard.press("n")
    page.keyboard.type("email placeholder is fine; the reply hedges")
    page.keyboard.press("Escape")
    page.keyboard.press("4")
    # The next item is claimed; none is left for ana (the other is globex's): it says so.
    page.wait_for_url("**/review/queues/safety?empty=1&done=*")
    expect(page.locator("#done")).to_be_visible()
    expect(page.locator("#empty")).to_contain_text("That was the last one")
    assert page.locator(f"#items tr[data-item='{ids['acme']}']").count() == 0

    item = page.request.get(f"{base}/v1/review/queues/safety/items/{ids['acme']}")
    assert item.status == 200
    body = item.json()
    assert body["status"] == "decided"
    assert body["verdicts"]["ana"]["label"] == "hedging"
    assert body["verdicts"]["ana"]["note"] == "email placeholder is fine; the reply hedges"

    # Another tenant's item: 403 in the console and in the API.
    resp = page.goto(f"{base}/review/queues/safety/items/{ids['globex']}")
    assert resp is not None and resp.status == 403
    expect(page.locator("#error-status")).to_have_text("403")
    api = page.request.get(f"{base}/v1/review/queues/safety/items/{ids['globex']}")
    assert api.status == 403
    assert api.json()["error"]["code"] == "permission_denied"

    # The variant comparison: canary and control side by side, pairwise preference.
    page.goto(f"{base}/review/queues/rollout")
    page.click("#claim-next")
    page.wait_for_url(f"**/items/{ids['anomaly']}?lease=*")
    expect(page.locator("#side-canary .completion")).to_contain_text("Great question")
    expect(page.locator("#side-control .completion")).to_contain_text("chlorine gas")
    # The anomaly card reads as dates and rounded numbers, never raw epoch ms or None.
    card = page.locator("#anomaly")
    expect(card.locator("tr[data-key=window] td")).to_contain_text("2025-10-09 08:53:20 UTC")
    expect(card.locator("tr[data-key=p_value] td")).to_have_text("7.00e-04")
    assert "None" not in card.inner_text() and "1760000000000" not in card.inner_text()
    page.keyboard.press("d")
    assert page.locator("input[name=preference][value=control]").is_checked()
    page.screenshot(path=str(shots / "review-compare.png"), full_page=True)
    page.keyboard.press("3")
    page.wait_for_url("**/review/queues/rollout?empty=1&done=*")
    anomaly = page.request.get(f"{base}/v1/review/queues/rollout/items/{ids['anomaly']}").json()
    assert anomaly["verdict_count"] == 1 and anomaly["status"] == "open"  # k = 2
    assert anomaly["verdicts"] is None  # blind review

    # A lead sees agreement per queue; the rollout queue is below alpha 0.667 and marked.
    page.click("header form.who button")
    page.fill("#token", TOKENS["lea"])
    page.click("#login-form button[type=submit]")
    expect(page.locator("#queues tr[data-queue=rollout] .alpha.low")).to_be_visible()
    page.screenshot(path=str(shots / "review-queues-lead.png"), full_page=True)
    page.goto(f"{base}/review/insights")
    expect(page.locator("section[data-queue=rollout] .alpha.low")).to_be_visible()
    expect(page.locator("#precision")).to_contain_text("psi_drift")
    page.screenshot(path=str(shots / "review-insights.png"), full_page=True)
