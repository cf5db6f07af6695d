"""The rollout console page in a real browser (Debian's chromium, headless, Playwright) against a
real uvicorn server and the real Redis, fed a fixture view model built from real judge records.

A lead logs in, opens the rollout list, opens a rollout awaiting approval: sees the canary share,
next step, each metric's numbers and the plot (one SVG panel per metric), the sample-ratio check,
and clicks Approve, which posts ``{"step": k}`` with the console's request-forgery header to
``POST /v1/rollouts/{id}/approve`` (here a recording stand-in for the controller's route). A rolled
back rollout shows its failed guardrail metric and no enabled button. Screenshots go to
``$ROLLGUARD_SCREENSHOTS`` when set (``docs/img`` for docs/rollouts.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.responses import JSONResponse

from gateway.review.rollout_view import StaticRollouts
from tests.browser import BROWSER_TEST
from tests.review import rollout_fixture as F
from tests.review.appkit import TOKENS, build_app
from tests.servers import serve_app

pytestmark = BROWSER_TEST


@pytest.fixture()
def console(redis_url: str) -> Iterator[tuple[str, list[dict[str, Any]], dict[str, str]]]:
    ids = F.seed_items(redis_url, uuid.uuid4().hex[:8])
    app, _service = build_app(redis_url, rollouts=StaticRollouts([F.awaiting(), F.rolled_back()]))
    approvals: list[dict[str, Any]] = []

    @app.post("/v1/rollouts/{rollout_id}/approve")
    async def approve(rollout_id: str, request: Request) -> JSONResponse:
        approvals.append(
            {
                "id": rollout_id,
                "body": await request.json(),
                "csrf": request.headers.get("x-rollguard-review"),
            }
        )
        return JSONResponse({"id": rollout_id, "state": "running"})

    with serve_app(app) as srv:
        yield srv.url, approvals, ids


def test_rollout_page_plot_and_approve(
    console: tuple[str, list[dict[str, Any]], dict[str, str]], shots: Path, browser: Any
) -> None:
    from playwright.sync_api import expect

    base, approvals, ids = console
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/review/rollouts")
    page.fill("#token", TOKENS["lea"])
    page.click("#login-form button[type=submit]")
    expect(page.locator("#rollouts tr[data-rollout=chat-v2]")).to_be_visible()
    page.screenshot(path=str(shots / "rollouts.png"), full_page=True)

    page.click("#rollouts a[href='/review/rollouts/chat-v2']")
    expect(page.locator("#percent")).to_have_text("5 %")
    expect(page.locator("#next-step")).to_have_text("25 %")
    expect(page.locator("#metrics tr[data-metric=refusal_rate] .tolerance")).to_have_text("1")
    for name in ("refusal_rate", "hedging_rate", "reply_length_ratio"):
        expect(page.locator(f"#plot svg g#metric-{name}")).to_be_attached()
    box = page.locator("#plot svg").bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 150
    expect(page.locator("#srm-verdict")).to_have_text("split as configured")
    breach = page.locator(f"#review-items tr[data-item='{ids['breach']}'] td.verdicts")
    expect(breach).to_contain_text("ana: refusal")
    page.screenshot(path=str(shots / "rollout.png"), full_page=True)

    approve = page.locator("#approve")
    expect(approve).to_be_enabled()
    with page.expect_navigation():  # the page reloads after an approval
        approve.click()
        expect(page.locator("#approve-message")).to_contain_text("Approved")
    assert approvals == [{"id": "chat-v2", "body": {"step": 1}, "csrf": "1"}]

    page.goto(f"{base}/review/rollouts/chat-v3")
    expect(page.locator("#state")).to_have_text("rolled back")
    expect(page.locator("#metrics tr[data-metric=refusal_rate] .mstatus")).to_have_text("fail")
    expect(page.locator("#approve")).to_be_disabled()
