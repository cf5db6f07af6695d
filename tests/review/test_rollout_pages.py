"""The console's rollout pages over a real uvicorn server and the real Redis, fed a fixture view
model (real judge records): numbers, plot, sample-ratio check, the canary's review items with
their verdicts (blind for reviewers), the Approve button for leads and operators only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.review.rollout_view import StaticRollouts
from tests.servers import serve_app

from . import rollout_fixture as F
from .appkit import TOKENS, build_app

pytestmark = pytest.mark.integration


def _h(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


@pytest.fixture()
def console(redis_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    ids = F.seed_items(redis_url, uuid.uuid4().hex[:8])
    app, _service = build_app(redis_url, rollouts=StaticRollouts([F.awaiting(), F.rolled_back()]))
    with serve_app(app) as srv:
        yield srv.url, ids


def _get(c: httpx.Client, path: str, who: str) -> httpx.Response:
    return c.get(path, headers=_h(who))


def test_rollout_list_and_page(console: tuple[str, Any]) -> None:
    base, ids = console
    with httpx.Client(base_url=base) as c:
        r = c.get("/review/rollouts")
        assert r.status_code == 303 and r.headers["location"].startswith("/review/login")
        page = _get(c, "/review/rollouts", "lea")
        assert page.status_code == 200
        assert 'data-rollout="chat-v2"' in page.text and 'data-rollout="chat-v3"' in page.text
        assert "awaiting approval" in page.text and "rolled back" in page.text

        r = _get(c, "/review/rollouts/chat-v2", "lea")
        assert r.status_code == 200
        html = r.text
        assert '<dd id="percent">5 %</dd>' in html and '<dd id="next-step">25 %</dd>' in html
        assert '<dd id="time-in-step">15m 30s</dd>' in html
        assert '<tr data-metric="refusal_rate"' in html and "2.10 %" in html  # canary refusal share
        assert "<svg" in html and 'id="metric-reply_length_ratio"' in html
        assert 'id="srm-verdict" class="ok"' in html
        assert 'id="approve" data-rollout="chat-v2" data-step="1"' in html
        assert "disabled" not in html.split('id="approve"')[1].split(">")[0]
        # the canary's items: the breach (ana's verdict visible to a lead) and the canary interaction
        assert f'data-item="{ids["breach"]}"' in html and f'data-item="{ids["canary"]}"' in html
        assert f'data-item="{ids["control"]}"' not in html
        assert "ana: refusal" in html


def test_roles_blind_verdicts_rollback_and_404(console: tuple[str, Any]) -> None:
    base, ids = console
    with httpx.Client(base_url=base) as c:
        ben = _get(c, "/review/rollouts/chat-v2", "ben").text
        assert 'id="approve"' not in ben  # a reviewer cannot promote
        assert f'data-item="{ids["breach"]}"' in ben
        assert "ana: refusal" not in ben and "blind until decided" in ben
        ops = _get(c, "/review/rollouts/chat-v2", "ops").text
        assert 'id="approve"' in ops
        back = _get(c, "/review/rollouts/chat-v3", "lea").text
        assert '<dd id="percent">0 %</dd>' in back and "guardrail_breach" in back
        assert 'tr data-metric="refusal_rate" class="status-fail"' in back
        btn = back.split('id="approve"')[1].split(">")[0]
        assert "disabled" in btn  # not awaiting approval
        missing = _get(c, "/review/rollouts/nope", "lea")
        assert missing.status_code == 404 and "no such rollout" in missing.text
