"""``make demo`` raises an anomaly item a new user can open: the demo's anomaly step
(``gateway.demo.run.raise_demo_anomaly``, the same call ``run_demo`` makes after the replay) runs
against the real store, then the console (real uvicorn server, Debian's chromium driven by
Playwright, the demo's review configuration and reviewer token) lists the item with its snippet
and shows the failed metric and the canary/control comparison, verdict controls in view.

Screenshots go to ``$ROLLGUARD_SCREENSHOTS`` when set (``docs/img``), else to the temporary directory.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from rich.console import Console

from gateway.demo.rollout_scenario import FLATTERY
from gateway.demo.run import raise_demo_anomaly
from gateway.review.config import parse_review_settings
from gateway.review.demo import DEMO_TOKENS, demo_review_config
from gateway.review.service import ReviewService
from tests.browser import BROWSER_TEST
from tests.integration.test_console_flow_browser import VIEWPORT, assert_verdict_controls_in_view
from tests.review.appkit import build_app
from tests.servers import serve_app

pytestmark = BROWSER_TEST


def _open_anomaly_items(redis_url: str) -> list[str]:
    async def run() -> list[str]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            svc = ReviewService(parse_review_settings(demo_review_config()), client)
            return [it.id for it in await svc.queues.open_items("rollout") if it.source == "anomaly"]
        finally:
            await client.aclose()

    return asyncio.run(run())


@pytest.fixture()
def demo_console(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    out = io.StringIO()
    code = raise_demo_anomaly(tmp_path, redis_url, Console(file=out, width=160))
    assert code == 0, out.getvalue()
    assert "rolled back" in out.getvalue()
    items = _open_anomaly_items(redis_url)
    assert len(items) == 1
    app, _service = build_app(redis_url, review=demo_review_config())
    with serve_app(app) as srv:
        yield srv.url, items[0]


def test_demo_anomaly_item_shows_its_canary_control_comparison(
    demo_console: tuple[str, str], shots: Path, browser: Any
) -> None:
    from playwright.sync_api import expect

    base, item_id = demo_console
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{base}/review")
    page.fill("#token", DEMO_TOKENS["reviewer"])
    page.click("#login-form button[type=submit]")
    page.click("#queues a[href='/review/queues/rollout']")

    row = page.locator(f"#items tr[data-item='{item_id}']")
    expect(row.locator("td.detectors")).to_have_text("rollout_judge")
    expect(row.locator("td.snippet")).to_contain_text("vs threshold")
    expect(row.locator("td.snippet")).to_contain_text("canary prompt:")
    expect(row).to_contain_text("critical")
    page.screenshot(path=str(shots / "review-demo-queue.png"), full_page=True)

    page.click("#claim-next")
    page.wait_for_url(f"**/items/{item_id}?lease=*")
    card = page.locator("#anomaly")
    expect(card).to_contain_text("rollout_judge")
    expect(card.locator("tr[data-key=metric] td")).to_have_text(re.compile("refusal_rate|sycophancy_rate"))
    comparison = page.locator("#comparison")
    expect(comparison).to_be_visible()
    box = comparison.bounding_box()  # the comparison starts above the fold
    assert box is not None and box["y"] < VIEWPORT["height"] - 200, box
    canary = page.locator("#side-canary .completion")
    control = page.locator("#side-control .completion")
    expect(canary).to_contain_text(FLATTERY.strip())
    assert FLATTERY.strip() not in control.inner_text()
    assert control.inner_text().strip()
    canary_prompt = page.locator("#side-canary .role-user .text").inner_text()
    assert canary_prompt == page.locator("#side-control .role-user .text").inner_text()
    assert_verdict_controls_in_view(page)
    page.screenshot(path=str(shots / "review-demo-anomaly.png"))

    # The pairwise preference and a verdict; the item needs two reviewers (k = 2).
    page.keyboard.press("d")
    page.keyboard.press("3")
    page.wait_for_url("**/review/queues/rollout?empty=1&done=*")
    body = page.request.get(f"{base}/v1/review/queues/rollout/items/{item_id}").json()
    assert body["verdict_count"] == 1 and body["status"] == "open"
