"""Request edges found by a fresh-user trial: compressed bodies, ``metadata`` shape, and ``n > 1``
(every choice passes the output guardrails, streamed or not)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest

from tests.integration.conftest import GatewayFactory, Stub

pytestmark = pytest.mark.integration

BODY = {"model": "echo", "messages": [{"role": "user", "content": "hello"}]}


def _post(url: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30, **kw)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_compressed_body_is_415_not_a_utf8_error(gateway: GatewayFactory, stub: Stub, encoding: str) -> None:
    raw = gzip.compress(json.dumps(BODY).encode())
    with gateway() as url:
        resp = httpx.post(
            f"{url}/v1/chat/completions",
            content=raw,
            headers={"content-type": "application/json", "content-encoding": encoding},
            timeout=30,
        )
        plain = httpx.post(
            f"{url}/v1/chat/completions", json=BODY, headers={"content-encoding": "identity"}, timeout=30
        )
    assert resp.status_code == 415, resp.text
    err = resp.json()["error"]
    assert err["code"] == "unsupported_content_encoding" and encoding in err["message"]
    assert "UTF-8" not in err["message"]
    assert plain.status_code == 200
    assert stub.calls() == 1


@pytest.mark.parametrize(
    "metadata",
    ["x", ["a"], {"k": 1}, {"k": None}, {f"k{i}": "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513}],
    ids=["string", "array", "int-value", "null-value", "17-keys", "long-key", "long-value"],
)
def test_bad_metadata_is_400_naming_the_param(gateway: GatewayFactory, stub: Stub, metadata: Any) -> None:
    with gateway() as url:
        resp = _post(url, {**BODY, "metadata": metadata})
        ok = _post(url, {**BODY, "metadata": {f"k{i}": "v" for i in range(16)}})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "metadata"
    assert ok.status_code == 200
    assert stub.calls() == 1


EMAILS = ["first.person@example.com", "second.person@example.com", "third.person@example.com"]


def test_every_choice_of_n_3_is_guarded(gateway: GatewayFactory, stub: Stub) -> None:
    stub.script(
        "scripted",
        {"choices": [{"content": f"write to {e} today"} for e in EMAILS]},
    )
    with gateway() as url:
        resp = _post(url, {"model": "scripted", "n": 3, "messages": [{"role": "user", "content": "go"}]})
    assert resp.status_code == 200, resp.text
    choices = resp.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    for c in choices:
        assert c["message"]["content"].startswith("write to <EMAIL_ADDRESS_")
    assert "person@example.com" not in resp.text


def test_every_choice_of_a_streamed_n_3_is_guarded(gateway: GatewayFactory, stub: Stub) -> None:
    chunks: list[dict[str, Any]] = []
    for i in range(len(EMAILS)):
        chunks.append({"content": "write to ", "role": "assistant", "index": i})
    for i, e in enumerate(EMAILS):
        chunks.append({"content": f"{e} today", "index": i})
    chunks += [{"finish_reason": "stop", "index": i} for i in range(3)]
    stub.script("scripted", {"chunks": chunks})
    with gateway() as url:
        resp = _post(
            url,
            {"model": "scripted", "n": 3, "stream": True, "messages": [{"role": "user", "content": "go"}]},
        )
    assert resp.status_code == 200, resp.text
    assert "person@example.com" not in resp.text
    texts: dict[int, str] = {}
    for line in resp.text.splitlines():
        if line.startswith("data: {"):
            for c in json.loads(line[6:]).get("choices", []):
                texts[c["index"]] = texts.get(c["index"], "") + (c["delta"].get("content") or "")
    assert sorted(texts) == [0, 1, 2]
    for text in texts.values():
        assert text.startswith("write to <EMAIL_ADDRESS_") and text.endswith(" today")
