"""The review JSON API and console over a real uvicorn server and the real Redis: auth, grants,
leases, verdict validation, CSRF header, OpenAPI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateway.review.config import parse_review_settings
from gateway.review.service import ReviewService
from tests.servers import serve_app

from .appkit import TOKENS, build_app, flagged_record, review_config

pytestmark = pytest.mark.integration


def _seed(redis_url: str, cfg: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    async def run() -> list[str]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            svc = ReviewService(parse_review_settings(cfg), client)
            out = []
            for rec in records:
                out += [e.item_id for e in await svc.escalate_interaction(rec)]
            return out
        finally:
            await client.aclose()

    return asyncio.run(run())


def _h(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


@pytest.fixture()
def server(redis_url: str) -> Iterator[tuple[str, list[str]]]:
    cfg = review_config(lease_s=1.0)
    ids = _seed(redis_url, cfg, [flagged_record("a1"), flagged_record("g1", tenant="globex")])
    app, _service = build_app(redis_url, cfg)
    with serve_app(app) as srv:
        yield srv.url, ids


def test_auth_grants_and_tenants(server: tuple[str, list[str]]) -> None:
    base, (acme, globex) = server
    with httpx.Client(base_url=base) as c:
        r = c.get("/v1/review/queues")
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert c.get("/v1/review/queues", headers={"Authorization": "Bearer nope"}).status_code == 401
        me = c.get("/v1/review/me", headers=_h("ana")).json()
        assert me == {"name": "ana", "role": "reviewer", "queues": ["safety", "rollout"], "tenants": ["acme"]}
        assert [q["queue"] for q in c.get("/v1/review/queues", headers=_h("eve")).json()] == ["safety"]
        assert c.get("/v1/review/queues/rollout/items", headers=_h("eve")).status_code == 403
        assert c.get("/v1/review/queues/nope/items", headers=_h("ana")).status_code == 404
        r = c.get(f"/v1/review/queues/safety/items/{globex}", headers=_h("ana"))
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
        assert c.get(f"/v1/review/queues/safety/items/{globex}", headers=_h("eve")).status_code == 200
        listed = c.get("/v1/review/queues/safety/items", headers=_h("ana")).json()
        assert [i["id"] for i in listed] == [acme]
        ana_safety = c.get("/v1/review/queues", headers=_h("ana")).json()[0]
        assert (ana_safety["queue"], ana_safety["open"], ana_safety["scoped"]) == ("safety", 1, True)
        assert ana_safety["claim_breaches"] == 0 and ana_safety["oldest_age_ms"] >= 0
        ops_all = c.get("/v1/review/queues", headers=_h("ops")).json()
        assert (ops_all[0]["open"], ops_all[0]["scoped"], ops_all[0]["by_priority"]["P1"]) == (2, False, 2)
        ops_queues = [q["queue"] for q in ops_all]
        assert ops_queues == ["safety", "rollout", "triage", "escalation", "adjudication"]
        assert c.post("/v1/review/queues/safety/claim", headers=_h("ops")).status_code == 403
        assert c.post("/v1/review/queues/adjudication/claim", headers=_h("ana")).status_code == 403
        # eve (globex only) claims the globex item, never the acme one.
        leases = c.post("/v1/review/queues/safety/claim", headers=_h("eve"), json={"count": 5}).json()
        assert [le["item_id"] for le in leases] == [globex]


def test_lease_expiry_verdict_validation_and_blind_review(server: tuple[str, list[str]]) -> None:
    base, (acme, _globex) = server
    with httpx.Client(base_url=base) as c:
        (lease,) = c.post("/v1/review/queues/safety/claim", headers=_h("ana")).json()
        assert lease["item_id"] == acme and lease["lease"].startswith("safety:P1:")
        hb = c.post(f"/v1/review/leases/{lease['lease']}/heartbeat", headers=_h("ana"))
        assert hb.status_code == 200 and hb.json()["expires_ms"] > lease["expires_ms"] - 1
        time.sleep(1.2)  # ana's lease (1 s) expires
        (again,) = c.post("/v1/review/queues/safety/claim", headers=_h("ben")).json()
        assert again["item_id"] == acme
        late = c.post(
            f"/v1/review/leases/{lease['lease']}/verdict",
            headers=_h("ana"),
            json={"item_id": acme, "label": "acceptable"},
        )
        assert late.status_code == 409 and late.json()["error"]["code"] == "lease_lost"
        bad = c.post(
            f"/v1/review/leases/{again['lease']}/verdict",
            headers=_h("ben"),
            json={"item_id": acme, "label": "not-a-label"},
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "label"
        assert (
            c.post(
                "/v1/review/leases/garbage/verdict",
                headers=_h("ben"),
                json={"item_id": acme, "label": "acceptable"},
            ).status_code
            == 400
        )
        ok = c.post(
            f"/v1/review/leases/{again['lease']}/verdict",
            headers=_h("ben"),
            json={"item_id": acme, "label": "policy_violation", "note": "leaks"},
        )
        assert ok.json() == {"item_id": acme, "verdicts": 1, "k": 1, "decided": True}
        item = c.get(f"/v1/review/queues/safety/items/{acme}", headers=_h("ana")).json()
        assert item["status"] == "decided" and item["verdicts"]["ben"]["note"] == "leaks"
        audit = c.get("/v1/review/queues/safety/audit", headers=_h("lea")).json()
        events = [e["event"] for e in reversed(audit)]
        assert events[-5:] == ["claim", "lease_expired", "claim", "verdict", "decided"]
        assert c.get("/v1/review/queues/safety/audit", headers=_h("ana")).status_code == 403


def test_late_verdict_is_409_lease_expired_without_a_sweep(server: tuple[str, list[str]]) -> None:
    base, (acme, _globex) = server
    with httpx.Client(base_url=base) as c:
        (lease,) = c.post("/v1/review/queues/safety/claim", headers=_h("ana")).json()
        time.sleep(1.2)  # past expires_ms; the service's 15 s sweep has not run again
        late = c.post(
            f"/v1/review/leases/{lease['lease']}/verdict",
            headers=_h("ana"),
            json={"item_id": acme, "label": "acceptable"},
        )
        assert late.status_code == 409
        err = late.json()["error"]
        assert err["code"] == "lease_expired" and "expired at" in err["message"]
        hb = c.post(f"/v1/review/leases/{lease['lease']}/heartbeat", headers=_h("ana"))
        assert hb.status_code == 409 and hb.json()["error"]["code"] == "lease_lost"  # already returned
        item = c.get(f"/v1/review/queues/safety/items/{acme}", headers=_h("lea")).json()
        assert item["status"] == "open" and item["verdict_count"] == 0
        listed = c.get("/v1/review/queues/safety/audit", headers=_h("lea")).json()
        assert [e["event"] for e in listed[:2]] == ["lease_expired", "claim"]


def test_cookie_session_writes_need_the_header(server: tuple[str, list[str]]) -> None:
    base, _ids = server
    with httpx.Client(base_url=base) as c:
        r = c.post("/review/login", data={"token": "wrong", "next": "/review"})
        assert r.status_code == 401
        r = c.post("/review/login", data={"token": TOKENS["ana"], "next": "https://evil.example/"})
        assert r.status_code == 303 and r.headers["location"] == "/review"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert c.get("/v1/review/me").json()["name"] == "ana"
        assert c.post("/v1/review/queues/safety/claim").status_code == 401
        r = c.post("/v1/review/queues/safety/claim", headers={"X-Rollguard-Review": "1"})
        assert r.status_code == 200 and len(r.json()) == 1
        for path in ("/review", "/review/queues/safety", "/review/insights"):
            assert c.get(path).status_code == 200
        c.post("/review/logout")
        r = c.get("/review")
        assert r.status_code == 303 and r.headers["location"].startswith("/review/login")


def test_openapi_documents_the_review_api(server: tuple[str, list[str]]) -> None:
    base, _ids = server
    spec = httpx.get(f"{base}/openapi.json").json()
    paths = spec["paths"]
    for p in (
        "/v1/review/queues",
        "/v1/review/queues/{queue}/claim",
        "/v1/review/leases/{lease}/heartbeat",
        "/v1/review/leases/{lease}/release",
        "/v1/review/leases/{lease}/verdict",
    ):
        assert p in paths
    assert not any(p.startswith("/review") for p in paths)
    body = paths["/v1/review/leases/{lease}/verdict"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("VerdictBody")
