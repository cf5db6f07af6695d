"""Faults of issue 10 found by the chaos trial, each against the real gateway (uvicorn, the stub
upstream, the real Redis) with two tenants:

- history that cannot be valid (glued tool-call arguments, a tool message without its call) is a
  400 naming the message, and the upstream is never called;
- lone UTF-16 surrogates in any JSON string (chat body, review verdict and release) are a 400,
  never a 500, and the leased item is not lost;
- an app key reads only its tenant's detector statistics at ``/v1/detectors``; a review operator
  reads all;
- a lead granted one tenant reads only that tenant's review audit events.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis

from detectors.engine import WindowEngine, observation
from gateway.store.keys import STATE_KEY
from rollguard.settings import hash_api_key
from tests.integration.conftest import GatewayFactory, Stub
from tests.review.appkit import TOKENS, review_config

pytestmark = pytest.mark.integration

KEYS = {"acme": "sk-acme-faults", "globex": "sk-globex-faults"}
LOU = "tok-lou-lead-acme"
"""A lead granted the acme tenant only."""


def _app(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def _rev(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def two_tenants(gateway: GatewayFactory) -> Iterator[httpx.Client]:
    keys = [{"key_hash": hash_api_key(k), "tenant": t} for t, k in KEYS.items()]
    review = review_config()
    review["reviewers"].append({"name": "lou", "token": LOU, "role": "lead", "tenants": ["acme"]})
    policies = [{"id": "pii", "type": "pii", "params": {"action": "flag"}}]
    with (
        gateway(gateway={"api_keys": keys}, policies=policies, review=review) as url,
        httpx.Client(base_url=url, timeout=10) as c,
    ):
        yield c


def _chat(c: httpx.Client, body: dict[str, Any] | bytes, tenant: str = "acme") -> httpx.Response:
    if isinstance(body, bytes):
        headers = {**_app(tenant), "Content-Type": "application/json"}
        return c.post("/v1/chat/completions", content=body, headers=headers)
    return c.post("/v1/chat/completions", json=body, headers=_app(tenant))


def test_history_that_cannot_be_valid_is_400_and_never_forwarded(
    two_tenants: httpx.Client, stub: Stub
) -> None:
    c = two_tenants
    call = {"id": "c1", "type": "function", "function": {"name": "pay", "arguments": '{"a":1}{"b":2}'}}
    glued = {
        "model": "echo",
        "messages": [
            {"role": "user", "content": "pay"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "user", "content": "thanks"},
        ],
    }
    r = _chat(c, glued)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "messages[1].tool_calls[0].function.arguments"
    orphan = {
        "model": "echo",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "c7", "content": "x"},
        ],
    }
    r = _chat(c, orphan)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[1].tool_call_id", r.text
    r = _chat(c, {"model": "echo", "messages": [{"role": "user", "content": "x"}], "temperature": 7})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_value", r.text
    assert stub.calls() == 0
    fixed = {**glued, "messages": [*glued["messages"]]}
    fixed["messages"][1] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{**call, "function": {"name": "pay", "arguments": '{"a": 1, "b": 2}'}}],
    }
    assert _chat(c, fixed).status_code == 200
    assert stub.calls() == 1


INVALID_OPTIONS = [
    ({"response_format": {"type": "bogus"}}, "response_format.type"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": {"function": {"name": "nope"}}}, "tool_choice.type"),
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice.function.name"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}]}, None),
    ({"stream": False, "stream_options": {"include_usage": True}}, "stream_options"),
    ({"logit_bias": {"abc": 500}}, "logit_bias"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
]
"""Requests OpenAI answers 400 that the fresh-user trial saw forwarded (200 from the model)."""


@pytest.mark.parametrize(
    ("extra", "param"), INVALID_OPTIONS, ids=[p or "image_url" for _, p in INVALID_OPTIONS]
)
def test_invalid_request_options_are_400_and_never_forwarded(
    two_tenants: httpx.Client, stub: Stub, extra: dict[str, Any], param: str | None
) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **extra}
    r = _chat(two_tenants, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == (param or "messages[0].content[0].image_url")
    assert stub.calls() == 0
    valid = {
        "model": "echo",
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}
        ],
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "pay"}}],
        "tool_choice": {"type": "function", "function": {"name": "pay"}},
        "logit_bias": {"50256": -100},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert _chat(two_tenants, valid).status_code == 200
    assert stub.calls() == 1


def test_a_lone_surrogate_in_a_chat_body_is_400(two_tenants: httpx.Client) -> None:
    raw = b'{"model": "echo", "messages": [{"role": "user", "content": "a\\ud800b"}]}'
    r = _chat(two_tenants, raw)
    assert r.status_code == 400, r.text
    assert "lone UTF-16 surrogate" in r.json()["error"]["message"]
    paired = b'{"model": "echo", "messages": [{"role": "user", "content": "a\\ud83d\\ude00b"}]}'
    assert _chat(two_tenants, paired).status_code == 200


def _flag_one_per_tenant(c: httpx.Client) -> dict[str, str]:
    for tenant in KEYS:
        r = _chat(
            c, {"model": "echo", "messages": [{"role": "user", "content": "I am jo@example.com"}]}, tenant
        )
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = c.get("/v1/review/queues/safety/items", headers=_rev(TOKENS["lea"])).json()
        if len(rows) == 2:
            return {row["tenant"]: row["id"] for row in rows}
        time.sleep(0.05)
    raise AssertionError("the flagged interactions were not escalated")


@pytest.mark.parametrize("action", ["verdict", "release"])
def test_a_lone_surrogate_in_review_bodies_is_400_and_the_lease_still_works(
    two_tenants: httpx.Client, action: str
) -> None:
    c = two_tenants
    items = _flag_one_per_tenant(c)
    ana = _rev(TOKENS["ana"])
    (lease,) = c.post("/v1/review/queues/safety/claim", headers=ana, json={"count": 1}).json()
    url = f"/v1/review/leases/{lease['lease']}/{action}"
    headers = {**ana, "Content-Type": "application/json"}
    for raw in (
        b'{"item_id": "\\ud800", "label": "acceptable"}',
        b'{"item_id": "x\\udfffy", "label": "acceptable"}',
    ):
        r = c.post(url, content=raw, headers=headers)
        assert r.status_code == 400, (raw, r.status_code, r.text)
        err = r.json()["error"]
        assert err["param"] == "item_id" and "lone UTF-16 surrogate" in err["message"], err
    if action == "verdict":
        for field in ("label", "note", "corrected"):
            body = {"item_id": items["acme"], "label": "acceptable", field: "PLACEHOLDER"}
            raw = orjson.dumps(body).replace(b"PLACEHOLDER", b"\\ud801")
            r = c.post(url, content=raw, headers=headers)
            assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text
    # Nothing was lost: the lease still decides (or gives back) its item.
    body = {"item_id": items["acme"], "label": "acceptable"}
    r = c.post(url, json=body, headers=ana)
    assert r.status_code in (200, 204), r.text


def _seed_detector_state(redis_url: str) -> None:
    engine = WindowEngine()
    for i in range(6):
        for tenant in KEYS:
            record = {
                "id": f"{tenant}-{i}",
                "created_ms": 1_760_000_000_000 + i,
                "tenant": tenant,
                "model": "echo",
                "messages": [{"role": "user", "content": "hello"}],
                "completion": "hi",
                "metadata": {"variant": "canary" if i % 2 else "control"},
            }
            engine.update(observation(record, {}, 0))
    client = redis.Redis.from_url(redis_url)
    client.set(STATE_KEY, orjson.dumps(engine.to_dict()))
    client.close()


def test_detector_statistics_are_scoped_to_the_callers_tenant(
    two_tenants: httpx.Client, redis_url: str
) -> None:
    c = two_tenants
    _seed_detector_state(redis_url)
    everything = c.get("/v1/detectors", headers=_rev(TOKENS["ops"]))  # a review operator
    assert everything.status_code == 200, everything.text
    full = everything.json()["data"]
    assert {"all", "tenant=acme", "tenant=globex"} <= set(full["output"])
    assert full["observations"] == 12
    for tenant, other in (("acme", "globex"), ("globex", "acme")):
        r = c.get("/v1/detectors", headers=_app(tenant))
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["tenants"] == [tenant]
        assert list(data["output"]) == [f"tenant={tenant}"]
        assert list(data["comparisons"]) == [f"model=echo|tenant={tenant}|variant=canary"]
        assert other not in r.text
    assert c.get("/v1/detectors", headers=_rev(TOKENS["lea"])).status_code == 401  # a lead is no operator
    assert c.get("/v1/detectors", headers=_rev("nope")).status_code == 401
    assert c.get("/v1/detectors").status_code == 401


def test_a_lead_granted_one_tenant_reads_only_its_audit_events(two_tenants: httpx.Client) -> None:
    c = two_tenants
    items = _flag_one_per_tenant(c)
    for who in ("ana", "eve"):  # a claim and a release of each tenant's item
        (lease,) = c.post("/v1/review/queues/safety/claim", headers=_rev(TOKENS[who]), json={}).json()
        url = f"/v1/review/leases/{lease['lease']}/release"
        assert c.post(url, headers=_rev(TOKENS[who]), json={"item_id": lease["item_id"]}).status_code == 204
    everything = c.get("/v1/review/queues/safety/audit", headers=_rev(TOKENS["lea"])).json()
    assert {e["item"] for e in everything if "item" in e} == set(items.values())
    mine = c.get("/v1/review/queues/safety/audit", headers=_rev(LOU))
    assert mine.status_code == 200, mine.text
    events = mine.json()
    assert {e["event"] for e in events} >= {"enqueue", "claim", "release"}
    assert {e["item"] for e in events} == {items["acme"]}
    assert len(events) == sum(1 for e in everything if e.get("item") == items["acme"])
    assert [
        e["item"]
        for e in c.get("/v1/review/queues/safety/audit", headers=_rev(LOU), params={"count": 1}).json()
    ] == [items["acme"]]
