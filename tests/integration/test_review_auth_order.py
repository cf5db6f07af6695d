"""Every review route of the real gateway (JSON API and console) authenticates before it validates:
no token, a wrong token or a cookie write without the CSRF header is 401 whatever the body, query
or path values; a token without the grant the URL needs is 403 before the body is read; and only a
client that may call the route learns about its bad body (400, OpenAI-shaped). The routes are
walked from the app itself, so a route added later is covered too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from gateway.app import create_app
from gateway.review.console import PUBLIC
from rollguard.settings import RollguardSettings
from tests.integration.conftest import Stub, base_config
from tests.review.appkit import TOKENS, review_config
from tests.servers import serve_app

pytestmark = pytest.mark.integration

BAD_JSON = b'{"item_id": "x", "label": '
BAD_QUERY = {"limit": "lots", "count": "many", "empty": "maybe"}
PARAMS = {
    "queue": "safety",
    "item_id": "0123456789abcdef01234567",
    "lease": "safety:P1:1-0",
    "name": "x",
    "rollout_id": "r1",
}
"""Path values for the walk; a forbidden grant swaps ``safety`` for ``rollout`` (eve: safety only)."""


def _api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every ``APIRoute`` with its full path; FastAPI 0.165+ keeps included routers nested."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield prefix + r.path, r
        elif hasattr(r, "original_router"):
            inner = prefix + str(getattr(getattr(r, "include_context", None), "prefix", "") or "")
            yield from _api_routes(list(r.original_router.routes), inner)


WITH_BODY: set[str] = set()
"""Paths of the walked routes that take a JSON body (filled by ``_route_list``)."""


def _route_list(app: Any) -> list[tuple[str, str]]:
    out = []
    for path, r in _api_routes(list(app.routes)):
        if path.startswith(("/v1/review", "/review")) and path not in PUBLIC:
            out += [(m, path) for m in sorted(r.methods or ())]
            if r.body_field is not None:
                WITH_BODY.add(path)
    return sorted(set(out))


@pytest.fixture()
def gateway_with_review(stub: Stub, redis_url: str) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    settings = RollguardSettings(**base_config(stub, redis_url, review=review_config()))
    app = create_app(settings)
    with serve_app(app) as srv:  # the review router is mounted at startup
        yield srv.url, _route_list(app.app)


def _url(path: str, **swap: str) -> str:
    return path.format(**dict(PARAMS, **swap))


def _send(c: httpx.Client, method: str, path: str, headers: dict[str, str], **swap: str) -> httpx.Response:
    return c.request(
        method,
        _url(path, **swap),
        params=BAD_QUERY,
        content=BAD_JSON if method != "GET" else None,
        headers={"Content-Type": "application/json", **headers},
    )


def _assert_unauthenticated(method: str, path: str, r: httpx.Response) -> None:
    where = f"{method} {path}"
    if path.startswith("/v1/review"):
        assert r.status_code == 401, (where, r.status_code, r.text[:200])
        assert r.json()["error"]["type"] == "authentication_error", where
    elif method == "GET":  # a console page: to the login page
        assert r.status_code == 303, (where, r.status_code)
        assert r.headers["location"].startswith("/review/login"), where
    else:  # a console form post: 401 with the login form
        assert r.status_code == 401, (where, r.status_code)
        assert 'id="login-form"' in r.text, where


def test_every_review_route_is_401_before_any_validation(
    gateway_with_review: tuple[str, list[tuple[str, str]]],
) -> None:
    base, routes = gateway_with_review
    assert len(routes) >= 19  # 15 API routes, 4 console pages/forms
    assert ("POST", "/review/queues/{queue}/claim") in routes
    with httpx.Client(base_url=base, follow_redirects=False) as c:
        for method, path in routes:
            _assert_unauthenticated(method, path, _send(c, method, path, {}))
            bad = {"Authorization": "Bearer not-a-reviewer-token"}
            _assert_unauthenticated(method, path, _send(c, method, path, bad))
            cookie = {"Cookie": "rollguard_review=not-a-session"}
            _assert_unauthenticated(method, path, _send(c, method, path, cookie))


def test_cookie_writes_without_the_csrf_header_are_401_before_validation(
    gateway_with_review: tuple[str, list[tuple[str, str]]],
) -> None:
    base, routes = gateway_with_review
    with httpx.Client(base_url=base, follow_redirects=False) as c:
        login = c.post("/review/login", data={"token": TOKENS["ana"], "next": "/review"})
        assert login.status_code == 303
        writes = [(m, p) for m, p in routes if p.startswith("/v1/review") and m != "GET"]
        assert len(writes) == 5
        for method, path in writes:
            r = _send(c, method, path, {})
            assert r.status_code == 401, (method, path, r.status_code, r.text[:200])


def test_missing_grants_are_403_before_validation_and_bad_bodies_400_after(
    gateway_with_review: tuple[str, list[tuple[str, str]]],
) -> None:
    base, routes = gateway_with_review
    api = [(m, p) for m, p in routes if p.startswith("/v1/review")]
    eve = {"Authorization": f"Bearer {TOKENS['eve']}"}  # safety queue, globex tenant only
    ana = {"Authorization": f"Bearer {TOKENS['ana']}"}  # a reviewer, not a lead
    ops = {"Authorization": f"Bearer {TOKENS['ops']}"}  # an operator: no leases
    with httpx.Client(base_url=base, follow_redirects=False) as c:
        for method, path in api:
            if "{queue}" in path:  # eve has no grant for the rollout queue
                r = _send(c, method, path, eve, queue="rollout")
                assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
            if "{lease}" in path:  # a lease of the rollout queue
                r = _send(c, method, path, eve, lease="rollout:P1:1-0")
                assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
                assert _send(c, method, path, ops).status_code == 403, (method, path)
        for path in ("/v1/review/variants", "/v1/review/queues/{queue}/audit"):
            assert _send(c, "GET", path, ana).status_code == 403, path
        assert _send(c, "POST", "/v1/review/queues/{queue}/aggregate", ana).status_code == 403
        assert _send(c, "POST", "/v1/review/queues/{queue}/claim", ops).status_code == 403
        # Console pages check the queue grant first too.
        r = _send(c, "GET", "/review/queues/{queue}", eve, queue="rollout")
        assert r.status_code == 403 and 'id="error-status"' in r.text
        # Authorized: now the body is validated, OpenAI-shaped.
        assert len(WITH_BODY) == 3  # claim, release, verdict
        for method, path in [(m, p) for m, p in api if p in WITH_BODY]:
            r = c.request(
                method,
                _url(path),
                content=BAD_JSON,
                headers=dict(ana, **{"Content-Type": "application/json"}),
            )
            if path.endswith("/aggregate"):
                assert r.status_code == 403, path  # ana is no lead: refused before the body
                continue
            assert r.status_code == 400, (method, path, r.status_code, r.text[:200])
            err = r.json()["error"]
            assert err["type"] == "invalid_request_error" and err["code"] == "invalid_value", path
            # Not JSON at all: said so, with where; no field named after the character offset.
            assert err["param"] is None and "not valid JSON" in err["message"], (path, err)
        r = c.get("/v1/review/queues/safety/items", params={"limit": "lots"}, headers=ana)
        assert r.status_code == 400 and r.json()["error"]["param"] == "query.limit"
