"""Config version and request id on every response and audit record; the operations audit stream
(config loads, kill switch, rollbacks) on a real gateway and store (issue 12)."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import orjson
import pytest
import redis

from gateway.store.keys import OPERATIONS_AUDIT
from rollguard.config_version import config_version
from rollguard.settings import RollguardSettings
from tests.integration.conftest import GatewayFactory, Stub, base_config
from tests.integration.test_rollout_api import PLAN, REVIEW, ROLLOUTS, h

pytestmark = pytest.mark.integration

VERSION = re.compile(r"[0-9a-f]{12}")
CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


def _records(redis_url: str, n: int) -> list[dict[str, Any]]:
    r = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 10
    try:
        while True:
            recs = [orjson.loads(f[b"record"]) for _, f in r.xrange("rollguard:interactions")]
            if len(recs) >= n or time.monotonic() > deadline:
                return recs
            time.sleep(0.05)
    finally:
        r.close()


def _ops(redis_url: str) -> list[dict[str, str]]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [f for _, f in r.xrange(OPERATIONS_AUDIT)]
    finally:
        r.close()


def test_every_response_carries_the_config_version_and_a_request_id(
    gateway: GatewayFactory, redis_url: str
) -> None:
    with gateway(policies=[]) as url:
        responses = {
            "chat": httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-request-id": "abc-123"}),
            "stream": httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": True}),
            "bad json": httpx.post(f"{url}/v1/chat/completions", content=b"{nope"),
            "unknown model": httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "model": "nope"}),
            "models": httpx.get(f"{url}/v1/models", headers={"x-request-id": "x" * 129}),
            "404 route": httpx.get(f"{url}/nowhere", headers={"x-request-id": "mail me@example.com"}),
            "health": httpx.get(f"{url}/healthz"),
            "console static": httpx.get(f"{url}/review/static/console.css"),
            "console login": httpx.get(f"{url}/review/login"),
        }
    versions = {name: r.headers.get("x-rollguard-config-version") for name, r in responses.items()}
    assert len(set(versions.values())) == 1, versions
    assert VERSION.fullmatch(versions["chat"] or "")
    ids = {name: r.headers.get("x-request-id") for name, r in responses.items()}
    assert ids["chat"] == "abc-123"  # a valid client id is echoed
    assert responses["console static"].status_code == 200  # a trial reported it without the headers
    for name in ("stream", "bad json", "unknown model", "models", "404 route", "health", "console static"):
        assert re.fullmatch(r"rg-[0-9a-f]{32}", ids[name] or ""), (name, ids[name])  # invalid: replaced
    assert len(set(ids.values())) == len(ids)
    assert responses["bad json"].status_code == 400 and responses["404 route"].status_code == 404
    recs = {r["request_id"]: r for r in _records(redis_url, 2)}
    assert recs["abc-123"]["config_version"] == versions["chat"]
    assert recs[ids["stream"]]["config_version"] == versions["chat"]


def test_the_version_follows_the_effective_config_and_ignores_secrets(stub: Stub, redis_url: str) -> None:
    base = RollguardSettings(**base_config(stub, redis_url))
    same = RollguardSettings(**base_config(stub, redis_url))
    assert config_version(base) == config_version(same)
    other_key = base_config(stub, redis_url)
    for m in other_key["model_list"]:
        m["litellm_params"]["api_key"] = "sk-rotated"
    other_key["store"]["redis_url"] = redis_url.replace("redis://", "redis://:s3cret@")
    other_key["gateway"] = {"api_keys": [{"key": "k-1", "tenant": "t"}]}
    rotated = other_key | {"gateway": {"api_keys": [{"key": "k-2", "tenant": "t"}]}}
    assert config_version(RollguardSettings(**other_key)) == config_version(RollguardSettings(**rotated))
    changed = RollguardSettings(**base_config(stub, redis_url, router_settings={"num_retries": 2}))
    assert config_version(changed) != config_version(base)


def test_config_loads_kill_switch_and_rollbacks_go_to_the_operations_audit(
    gateway: GatewayFactory, redis_url: str
) -> None:
    cfg = {"review": REVIEW, "flags": {"rollouts": {"chat": ROLLOUTS}}}
    with gateway(**cfg) as url:
        version = httpx.get(f"{url}/healthz").headers["x-rollguard-config-version"]
        assert httpx.post(
            f"{url}/v1/rollouts", json={"id": "r1", "plan": PLAN}, headers=h("tok-lead")
        ).is_success
        resp = httpx.post(
            f"{url}/v1/flags/chat-rollout/kill", json={"reason": "bad canary"}, headers=h("tok-ops")
        )
        assert resp.status_code == 200
        assert httpx.post(f"{url}/v1/flags/chat-rollout/revive", headers=h("tok-ops")).status_code == 200
        resp = httpx.post(f"{url}/v1/rollouts/r1/rollback", json={"reason": "test"}, headers=h("tok-ops"))
        assert resp.status_code == 200
    events = _ops(redis_url)
    actions = [e["action"] for e in events]
    assert actions[0] == "config_loaded"
    assert {"flag_kill", "flag_revive", "rollout_rollback"} <= set(actions)
    kill = next(e for e in events if e["action"] == "flag_kill")
    assert (kill["by"], kill["target"], kill["reason"]) == ("operator:ops", "chat-rollout", "bad canary")
    rollback = next(e for e in events if e["action"] == "rollout_rollback")
    assert (rollback["by"], rollback["target"], rollback["reason"]) == ("operator:ops", "r1", "test")
    assert {e["config_version"] for e in events} == {version}
