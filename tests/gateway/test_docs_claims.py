"""What the README and docs tell a fresh user, pinned to the code: the demo model's script is a
JSON string in ``metadata``, the console's tokens, ``/v1/detectors`` needs a worker, the client
error statuses."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import aiohttp
import pytest

from gateway.config_check import check_config
from gateway.demo.upstream import start_stub
from gateway.errors import _HTTP_CODES
from gateway.review.demo import DEMO_TOKENS
from gateway.routes.admin import router as admin_router
from rollguard.settings import RollguardSettings, hash_api_key

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


async def test_the_readme_stub_script_example_works_as_written() -> None:
    m = re.search(r"^script = (\{.*\})$", README, re.MULTILINE)
    assert m is not None and 'metadata={"stub_script": json.dumps(script)}' in README
    script = ast.literal_eval(m.group(1))
    runner, base = await start_stub()
    try:
        body = {
            "model": "echo",
            "stream": True,
            "messages": [{"role": "user", "content": "Hi"}],
            "metadata": {"stub_script": json.dumps(script)},
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{base}/chat/completions", json=body) as r,
        ):
            assert r.status == 200
            raw = (await r.read()).decode()
    finally:
        await runner.cleanup()
    pieces = [json.loads(x[6:]) for x in raw.split("\n\n") if x.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in pieces if c["choices"])
    assert text == "Hello"


def test_plain_serve_has_the_demo_reviewer_tokens_the_readme_names() -> None:
    review = check_config(RollguardSettings()).settings.review
    assert review is not None
    assert {r.token_hash for r in review.reviewers} == {hash_api_key(t) for t in DEMO_TOKENS.values()}
    for token in DEMO_TOKENS.values():
        assert f"`{token}`" in README


def test_the_detectors_route_says_it_needs_a_worker() -> None:
    [route] = [r for r in admin_router.routes if getattr(r, "path", "") == "/v1/detectors"]
    description = getattr(route, "description", "")
    assert "rollguard worker" in description and '"data": {}' in description
    assert "no `rollguard worker` running" in (REPO / "docs" / "detectors.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("status", sorted(s for s in _HTTP_CODES if 400 <= s < 500))
def test_operations_doc_lists_every_client_error_status(status: int) -> None:
    ops = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    m = re.search(r"^- Every client error is OpenAI-shaped.*?(?=^- )", ops, re.MULTILINE | re.DOTALL)
    assert m is not None and "Every client error is HTTP 400" not in ops
    assert str(status) in m.group(0)


def test_the_compose_secret_defaults_are_as_documented() -> None:
    """docs/operations.md names the secrets with a ``dev-only-change-me`` default and the ones
    defaulting to empty; deploy/compose.yaml must agree, both ways."""
    ops = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    compose = (REPO / "deploy" / "compose.yaml").read_text(encoding="utf-8")
    claim = re.search(r"Every secret the stack needs to start \(([^)]*)\) has a `dev-only-change-me`", ops)
    assert claim is not None
    claimed = set(re.findall(r"`(\w+)`", claim.group(1)))
    defaults = dict(re.findall(r"\$\{(\w+):-([^}]*)\}", compose))
    with_dev_default = {name for name, value in defaults.items() if "dev-only-change-me" in value}
    assert claimed == with_dev_default
    empty = {name for name, value in defaults.items() if value == ""}
    for name in empty:
        assert f"`{name}` defaults to empty" in ops.replace("\n", " ")
