"""The misbehaving upstream of the chaos trial (issue 10, fault 3), against real servers: an
aiohttp upstream on a socket that answers 200 with every wrong shape, the real gateway under
uvicorn and the session Valkey. Must hold: every such reply is 502 ``upstream_invalid_response``
with the interaction id, retried (and fallen back when configured), and recorded; 0 other 5xx.
Before, a non-streamed wrong shape gave 500 ``internal_error`` with no record, retry or fallback."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from gateway.app import create_app
from rollguard.settings import RollguardSettings
from tests.chaos.faults import records
from tests.integration.conftest import Stub, base_config, stub
from tests.servers import ThreadedLoop, serve_app

__all__ = ["stub"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _completion(**choice: Any) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [choice]}


NON_STREAMED: dict[str, Any] = {
    "choices-null": {"id": "x", "object": "chat.completion", "choices": [None]},
    "choices-string": {"id": "x", "object": "chat.completion", "choices": "x"},
    "message-string": _completion(index=0, message="str", finish_reason="stop"),
    "message-missing": _completion(index=0, finish_reason="stop"),
    "choices-missing": {"id": "x", "object": "chat.completion"},
    "content-number": _completion(index=0, message={"role": "assistant", "content": 42}),
    "tool-calls-object": _completion(
        index=0, message={"role": "assistant", "content": None, "tool_calls": {}}
    ),
    "usage-string": {**_completion(index=0, message={"content": "hi"}), "usage": "many"},
    "array": [1, 2],
    "not-json": "<html>oops</html>",
}
GOOD_CHUNK = {
    "id": "x",
    "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {"content": "Hi"}}],
}
STREAMED: dict[str, list[Any]] = {
    "stream-first-choices-string": [{"id": "x", "object": "chat.completion.chunk", "choices": "x"}],
    "stream-first-null-choice": [{"id": "x", "object": "chat.completion.chunk", "choices": [None]}],
    "stream-mid-delta-string": [GOOD_CHUNK, {"id": "x", "choices": [{"index": 0, "delta": "str"}]}],
}


CALLS = web.AppKey("calls", Counter)


async def _misbehave(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model = str(body["model"])
    request.app[CALLS][model] += 1
    if model in STREAMED:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for chunk in STREAMED[model]:
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp
    reply = NON_STREAMED[model]
    raw = reply.encode() if isinstance(reply, str) else orjson.dumps(reply)
    return web.Response(body=raw, content_type="application/json")


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[tuple[str, Counter[str]]]:
    loop = ThreadedLoop()
    app = web.Application()
    app[CALLS] = Counter()
    app.router.add_post("/v1/chat/completions", _misbehave)

    async def start() -> web.AppRunner:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner

    runner = loop.run(start())
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1", app[CALLS]
    finally:
        loop.run(runner.cleanup())
        loop.close()


def test_every_wrong_reply_shape_is_a_recorded_502_retried_and_fallen_back(
    stub: Stub, redis_url: str, misbehaving: tuple[str, Counter[str]]
) -> None:
    bad_url, calls = misbehaving
    names = [*NON_STREAMED, *STREAMED]
    cfg = base_config(stub, redis_url, router_settings={"num_retries": 1, "retry_after": 0, "timeout": 5})
    cfg["model_list"] += [
        {"model_name": n, "litellm_params": {"model": f"openai/{n}", "api_base": bad_url, "api_key": "k"}}
        for n in names
    ]
    cfg["model_list"].append(
        {
            "model_name": "bad-then-echo",
            "litellm_params": {"model": "openai/choices-null", "api_base": bad_url},
        }
    )
    cfg["router_settings"]["fallbacks"] = [{"bad-then-echo": ["echo"]}]
    statuses: Counter[int] = Counter()
    answers: dict[str, tuple[int, str]] = {}
    with (
        serve_app(create_app(RollguardSettings(**cfg))) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as c,
    ):
        for name in names:
            body = {
                "model": name,
                "stream": name in STREAMED,
                "messages": [{"role": "user", "content": "hi"}],
            }
            r = c.post("/v1/chat/completions", json=body)
            statuses[r.status_code] += 1
            if name.startswith("stream-mid"):
                assert r.status_code == 200  # bytes were sent: the stream ends with the error event
                last = [ln for ln in r.text.splitlines() if ln.startswith("data: {")][-1]
                error = json.loads(last[6:])["error"]
            else:
                error = r.json()["error"]
                assert r.status_code == 502, (name, r.text)
                assert error["interaction_id"] == r.headers["x-rollguard-interaction-id"]
            assert error["code"] == "upstream_invalid_response", (name, error)
            answers[name] = (r.status_code, r.headers["x-rollguard-interaction-id"])
        fb = c.post(
            "/v1/chat/completions",
            json={"model": "bad-then-echo", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert fb.status_code == 200 and fb.json()["choices"][0]["message"]["content"] == "hi"
        time.sleep(0.5)  # the audit trail writes after the response
    recorded = {r["id"]: r for r in records(redis_url)}
    unrecorded = [n for n, (_, iid) in answers.items() if iid not in recorded]
    retried = {n: calls[n] for n in names}
    print(
        f"\n[misbehaving upstream] answers={dict(statuses)} unrecorded={unrecorded} upstream calls={retried}"
    )
    assert unrecorded == []
    for _, iid in answers.values():
        assert recorded[iid]["status"] == 502 and recorded[iid]["error_code"] == "upstream_invalid_response"
    # retried once each (choices-null twice more: the bad-then-echo alias before its fallback)
    assert all(
        retried[n] == (4 if n == "choices-null" else 2) for n in names if not n.startswith("stream-mid")
    )
    assert retried["stream-mid-delta-string"] == 1  # never retried after a chunk went out
    assert fb.headers["x-rollguard-interaction-id"] in recorded
    assert set(statuses) <= {200, 502}  # 0 other 5xx
