"""The rollout and kill-switch API on a real gateway (real Redis, real upstream stub)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.integration.conftest import GatewayFactory

REVIEW = {
    "queues": [{"name": "rollouts"}],
    "reviewers": [
        {"name": "ana", "token": "tok-lead", "role": "lead"},
        {"name": "ops", "token": "tok-ops", "role": "operator"},
        {"name": "rev", "token": "tok-rev", "role": "reviewer"},
    ],
}
ROLLOUTS = {"flag": "chat-rollout", "variants": {"control": "echo", "canary": "demo"}}
PLAN = {
    "flag": "chat-rollout",
    "subject": {"kind": "model", "control": "echo", "canary": "demo"},
    "steps": [50, 100],
}


def h(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def chat(url: str, user: str) -> httpx.Response:
    body: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "user": user}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)


def test_rollout_routes_roles_conflicts_and_the_kill_switch(gateway: GatewayFactory) -> None:
    cfg = {"review": REVIEW, "flags": {"rollouts": {"chat": ROLLOUTS}}}
    with gateway(**cfg) as url:
        body = {"id": "r1", "plan": PLAN}
        # no token: 401; a reviewer: 403, before the body is read
        assert httpx.post(f"{url}/v1/rollouts", json=body).status_code == 401
        assert httpx.post(f"{url}/v1/rollouts", content=b"{not json", headers=h("tok-rev")).status_code == 403
        bad = {"id": "r0", "plan": {**PLAN, "steps": [50, 20, 100]}}
        resp = httpx.post(f"{url}/v1/rollouts", json=bad, headers=h("tok-lead"))
        assert resp.status_code == 400 and "plan.steps" in resp.json()["error"]["message"]
        resp = httpx.post(f"{url}/v1/rollouts", json=body, headers=h("tok-lead"))
        assert resp.status_code == 201, resp.text
        assert resp.json()["status"] == "running" and resp.json()["percent"] == 50.0
        assert httpx.post(f"{url}/v1/rollouts", json=body, headers=h("tok-lead")).status_code == 409
        # approving a running rollout: 409; a reviewer may read but not approve
        assert httpx.post(f"{url}/v1/rollouts/r1/approve", headers=h("tok-lead")).status_code == 409
        assert httpx.post(f"{url}/v1/rollouts/r1/approve", headers=h("tok-rev")).status_code == 403
        assert httpx.get(f"{url}/v1/rollouts", headers=h("tok-rev")).json()["data"][0]["id"] == "r1"
        assert httpx.post(f"{url}/v1/rollouts/nope/pause", headers=h("tok-ops")).status_code == 404
        # the canary serves about half of the users now
        variants = {chat(url, f"u{i}").headers.get("x-rollguard-variant") for i in range(40)}
        assert variants == {"control", "canary"}
        resp = httpx.post(f"{url}/v1/rollouts/r1/rollback", json={"reason": "test"}, headers=h("tok-ops"))
        assert resp.status_code == 200 and resp.json()["status"] == "rolled_back"
        deadline = time.monotonic() + 1.0
        while {chat(url, f"u{i}").headers.get("x-rollguard-variant") for i in range(40)} != {"control"}:
            assert time.monotonic() < deadline
        detail = httpx.get(f"{url}/v1/rollouts/r1", headers=h("tok-lead")).json()
        events = [a["event"] for a in detail["audit"]]
        assert events[0] == "rollback" and events[-2:] == ["start", "create"]  # newest first
        assert detail["audit"][0]["who"] == "operator:ops"
        # the console's rollout pages read the same store
        page = httpx.get(f"{url}/review/rollouts/r1", headers=h("tok-lead"))
        assert page.status_code == 200 and "r1" in page.text and "rolled" in page.text.lower()
        listing = httpx.get(f"{url}/review/rollouts", headers=h("tok-rev"))
        assert listing.status_code == 200 and "/review/rollouts/r1" in listing.text
        # the kill switch: the model's rollout flag off -> the control route, for every user
        resp = httpx.post(f"{url}/v1/flags/chat-rollout/kill", headers=h("tok-ops"))
        assert resp.status_code == 200 and resp.json()["killed"] is True
        flags = httpx.get(f"{url}/v1/flags").json()
        assert flags["overrides"]["overrides"]["chat-rollout"]["killed"] is True
        assert httpx.post(f"{url}/v1/flags/chat-rollout/revive", headers=h("tok-rev")).status_code == 403
        assert httpx.post(f"{url}/v1/flags/chat-rollout/revive", headers=h("tok-ops")).status_code == 200
