"""The audit record never holds raw PII or secrets from any field of a request or a reply, and an
upstream's error message is masked before it reaches the client (and recorded, masked).

Every field of a maximal OpenAI chat request (and of a reply with tool calls) carries its own
e-mail address and payment card, so a failure names the field that leaked."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import orjson
import pytest

from policies.builtin.pii_entities import luhn_ok
from tests.integration.conftest import GatewayFactory, Stub

pytestmark = pytest.mark.integration


class Planted:
    """Hands out a unique ``e-mail + card`` text per field and remembers which field got which."""

    def __init__(self) -> None:
        self.fields: dict[str, tuple[str, str]] = {}
        self._n = itertools.count(1)

    def __call__(self, field: str) -> str:
        n = next(self._n)
        email = f"leak{n:03d}.{field.replace('.', '-').replace('[', '-').replace(']', '')}@example.com"
        body = f"4{n:014d}"  # a Visa-shaped number, made Luhn-valid by its check digit
        check = next(d for d in "0123456789" if luhn_ok(body + d))
        card = " ".join((body + check)[i : i + 4] for i in range(0, 16, 4))
        self.fields[field] = (email, card)
        return f"mail {email} card {card}"

    def leaks(self, blob: str) -> list[str]:
        """The fields whose e-mail or card (spaced or compact) appears in ``blob``."""
        out = []
        for field, (email, card) in self.fields.items():
            if email.lower() in blob.lower() or card in blob or card.replace(" ", "") in blob:
                out.append(field)
        return out


def maximal_request(p: Planted, model: str, stream: bool) -> dict[str, Any]:
    """Every request field of ``POST /v1/chat/completions`` (OpenAI API reference, 2025) with text
    in it, each holding its own planted value."""
    call_id = p("assistant.tool_call.id")
    return {
        "model": model,
        "stream": stream,
        "stream_options": {"include_usage": True} if stream else None,
        "messages": [
            {"role": "system", "content": p("system.content"), "name": p("system.name")},
            {"role": "developer", "content": p("developer.content"), "name": p("developer.name")},
            {
                "role": "user",
                "name": p("user.name"),
                "content": [
                    {"type": "text", "text": p("user.text")},
                    {"type": "image_url", "image_url": {"url": f"https://x.test/?q={p('image.url')}"}},
                    {"type": "input_audio", "input_audio": {"data": p("audio.data"), "format": "wav"}},
                    {"type": "file", "file": {"filename": p("file.filename"), "file_id": p("file.id")}},
                ],
                "x_unknown_field": p("user.unknown"),
            },
            {
                "role": "assistant",
                "content": None,
                "name": p("assistant.name"),
                "refusal": p("assistant.refusal"),
                "audio": {"id": p("assistant.audio.id")},
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": p("assistant.tool.name"),
                            "arguments": json.dumps({"note": p("assistant.args")}),
                        },
                    }
                ],
                "function_call": {
                    "name": p("assistant.fc.name"),
                    "arguments": json.dumps({"note": p("assistant.fc.args")}),
                },
            },
            # A tool message answers the call by its id (a 400 otherwise): the same planted value.
            {"role": "tool", "tool_call_id": call_id, "content": p("tool.content")},
            {"role": "function", "name": p("function.name"), "content": p("function.content")},
            {"role": "user", "content": p("user.last")},
        ],
        "user": p("user"),
        "metadata": {"k": p("metadata.value")},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "send",
                    "description": p("tools.description"),
                    "parameters": {"type": "object", "description": p("tools.schema")},
                },
            }
        ],
        "tool_choice": "auto",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "r", "schema": {"type": "object", "description": p("rf.schema")}},
        },
        "stop": [p("stop")],
        "prediction": {"type": "content", "content": p("prediction")},
        "safety_identifier": p("safety_identifier"),
        "prompt_cache_key": p("prompt_cache_key"),
        "web_search_options": {"user_location": {"type": "approximate", "approximate": {"city": p("city")}}},
        "temperature": 0.5,
        "seed": 7,
    }


def reply_script(p: Planted, stream: bool) -> dict[str, Any]:
    """A reply with text, a tool call (id, name, arguments) and a finish reason, all planted."""
    args = json.dumps({"to": p("reply.args.to"), p("reply.args.key"): 1})
    call_id, name, finish = p("reply.call.id"), p("reply.call.name"), p("reply.finish")
    content = p("reply.content")
    if stream:
        return {
            "chunks": [
                {"content": content, "role": "assistant"},
                {"tool_call": {"index": 0, "id": call_id, "name": name, "arguments": args}},
                {"finish_reason": finish},
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }
    return {
        "content": content,
        "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}],
        "finish_reason": finish,
    }


def _records(redis_url: str) -> list[dict[str, Any]]:
    import redis

    r = redis.Redis.from_url(redis_url)
    return [orjson.loads(fields[b"record"]) for _, fields in r.xrange("rollguard:interactions")]


def _record(redis_url: str, iid: str) -> dict[str, Any]:
    return next(x for x in _records(redis_url) if x["id"] == iid)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("policies", ["default", "none"])
def test_no_planted_value_of_any_field_reaches_the_audit_record(
    gateway: GatewayFactory, stub: Stub, redis_url: str, stream: bool, policies: str
) -> None:
    p = Planted()
    body = maximal_request(p, "scripted", stream)
    stub.script("scripted", reply_script(p, stream))
    overrides: dict[str, Any] = {} if policies == "default" else {"policies": []}
    with gateway(**overrides) as url:
        resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        iid = resp.headers["x-rollguard-interaction-id"]
    # The whole request reached the upstream (nothing refused): the test exercised every field.
    assert stub.requests()[-1]["body"]["metadata"] == body["metadata"]
    rec = _record(redis_url, iid)
    blob = json.dumps(rec)
    assert p.leaks(blob) == []
    # The placeholders are there (the fields were kept, masked), not dropped.
    assert rec["messages"][2]["name"].startswith("mail <EMAIL_ADDRESS_")
    assert rec["tool_calls"][0]["function"]["name"].startswith("mail <EMAIL_ADDRESS_")
    assert rec["finish_reason"].startswith("mail <EMAIL_ADDRESS_")


def test_the_requested_model_name_is_masked_in_the_record_of_a_404(
    gateway: GatewayFactory, redis_url: str
) -> None:
    p = Planted()
    with gateway() as url:
        resp = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": p("model"), "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert resp.status_code == 404
        iid = resp.headers.get("x-rollguard-interaction-id")
    recs = _records(redis_url) if iid is None else [_record(redis_url, iid)]
    assert p.leaks(json.dumps(recs)) == []


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_upstream_error_message_is_masked_for_the_client_and_recorded(
    gateway: GatewayFactory, stub: Stub, redis_url: str, stream: bool
) -> None:
    message = "context too long for user john.doe@example.com (key sk-proj-AbCdEf0123456789AbCdEf0123456789)"
    stub.script("scripted", {"status": 400, "error": {"message": message, "type": "invalid_request_error"}})
    with gateway() as url:
        resp = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "scripted", "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert resp.status_code == 400, resp.text
        err = resp.json()["error"]
        iid = resp.headers["x-rollguard-interaction-id"]
    assert err["code"] == "upstream_rejected_request"
    assert "john.doe" not in resp.text and "AbCdEf0123" not in resp.text
    assert err["message"].startswith("context too long for user <EMAIL_ADDRESS_1>")
    rec = _record(redis_url, iid)
    assert rec["status"] == 400 and rec["error_code"] == "upstream_rejected_request"
    assert rec["metadata"]["upstream_error"] == err["message"]
    assert "john.doe" not in json.dumps(rec)


def test_an_encoded_secret_is_flagged_and_never_stored_verbatim(
    gateway: GatewayFactory, redis_url: str
) -> None:
    """Trial fault: ``"decode this: " + base64("token ghp_...")`` was allowed, not flagged, and
    stored verbatim in the audit record."""
    import base64

    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    hidden = base64.b64encode(f"token {token}".encode()).decode()
    body = {"model": "echo", "messages": [{"role": "user", "content": f"decode this: {hidden}"}]}
    with gateway() as url:
        resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        iid = resp.headers["x-rollguard-interaction-id"]
    rec = _record(redis_url, iid)
    blob = json.dumps(rec)
    assert hidden not in blob and token not in blob and "<ENCODED_GITHUB_TOKEN_" in blob
    assert any(d["policy"] == "secrets" and d["verdict"] == "flag" for d in rec["decisions"])
