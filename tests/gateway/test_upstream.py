"""The upstream boundary against the real stub upstream over real sockets: both paths (lean aiohttp
and litellm), error mapping, retries, fallbacks, round-robin, SSE quirks, the stream guard."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.demo.upstream import StubState, start_stub, stub_state
from gateway.streaming import DONE, SSEParser, StreamGuard, decode_chunk, guard_stream
from gateway.upstream import Upstream, UpstreamStream
from rollguard.errors import (
    ConfigError,
    NotFound,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from rollguard.settings import RollguardSettings
from rollguard.types import Verdict

pytestmark = pytest.mark.integration

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


async def redact_emails(text: str) -> tuple[Verdict, str]:
    new = EMAIL.sub("<EMAIL_ADDRESS_1>", text)
    return (Verdict.REDACT if new != text else Verdict.ALLOW), new


@dataclass
class Stub:
    runner: web.AppRunner
    base: str

    @property
    def state(self) -> StubState:
        return stub_state(self.runner)

    def calls(self, model: str) -> int:
        return self.state.calls[model]

    def script(self, model: str, script: dict[str, Any], times: int | None = None) -> None:
        self.state.scripts[model] = [script, times]


@pytest.fixture()
async def stub() -> AsyncIterator[Stub]:
    runner, base = await start_stub()
    yield Stub(runner, base)
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def entry(alias: str, model: str, base: str, path: str = "lean", **params: Any) -> dict[str, Any]:
    lp: dict[str, Any] = {"model": f"openai/{model}", "api_base": base, "api_key": "sk-test", **params}
    if path == "litellm":
        lp["rollguard_path"] = "litellm"
    return {"model_name": alias, "litellm_params": lp}


def make(models: list[dict[str, Any]], **router: Any) -> Upstream:
    router.setdefault("num_retries", 0)
    router.setdefault("timeout", 5.0)
    return Upstream(RollguardSettings(model_list=models, router_settings=router))


def ask(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "alias", "messages": [{"role": "user", "content": text}], **extra}


PATHS = ["lean", "litellm"]


async def collect(s: UpstreamStream) -> list[dict[str, Any]]:
    out = []
    async with s:
        async for c in s:
            out.append(c)
    return out


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


# ---------------------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("path", PATHS)
async def test_complete_passes_fields_through_and_replaces_model(stub: Stub, path: str) -> None:
    up = make([entry("alias", "echo", stub.base, path)])
    try:
        resp = await up.complete("alias", ask("ping pong", user="u-1", temperature=0.2))
    finally:
        await up.aclose()
    assert resp["object"] == "chat.completion"
    assert resp["choices"][0]["message"]["content"] == "ping pong"
    assert resp["choices"][0]["finish_reason"] == "stop"
    assert resp["usage"]["total_tokens"] > 0
    seen = stub.state.requests[-1]
    assert seen["model"] == "echo"
    assert seen["body"]["temperature"] == 0.2
    if path == "lean":
        assert seen["body"]["user"] == "u-1"  # litellm drops ``user`` for openai/ models
    assert seen["headers"]["authorization"] == "Bearer sk-test"


async def test_lean_passes_unknown_fields_and_resolves_env_key(
    stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_KEY_FOR_TEST", "sk-from-env")
    up = make([entry("alias", "echo", stub.base, api_key="os.environ/STUB_KEY_FOR_TEST")])
    try:
        await up.complete("alias", ask(some_vendor_field={"x": 1}))
    finally:
        await up.aclose()
    seen = stub.state.requests[-1]
    assert seen["body"]["some_vendor_field"] == {"x": 1}
    assert seen["headers"]["authorization"] == "Bearer sk-from-env"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("include_usage", [True, False])
async def test_stream_usage_exactly_once_when_asked(stub: Stub, path: str, include_usage: bool) -> None:
    up = make([entry("alias", "echo", stub.base, path)])
    body = ask("one two three four five six seven", stream=True)
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    try:
        s = await up.open_stream("alias", body)
        guard = StreamGuard(redact_emails, holdback=8, include_usage=include_usage)
        out = [piece async for piece in guard_stream(s, guard)]
        await s.aclose()
    finally:
        await up.aclose()
    # the upstream is always asked for usage, so the gateway can record it
    assert stub.state.requests[-1]["body"]["stream_options"]["include_usage"] is True
    assert guard.usage is not None and guard.usage["completion_tokens"] > 0
    events = [decode_chunk(e) for e in _parse(out)]
    usage_events = [e for e in events if e and "usage" in e]
    assert len(usage_events) == (1 if include_usage else 0)
    if include_usage:
        assert usage_events[0]["choices"] == [] and events[-2] is usage_events[0]
    assert out[-1] == DONE and out.count(DONE) == 1
    assert guard.completion() == "one two three four five six seven"


def _parse(pieces: list[bytes]) -> list[Any]:
    p = SSEParser()
    evs = []
    for piece in pieces:
        evs.extend(p.feed(piece))
    return evs + p.close()


async def test_must_hold_email_split_across_upstream_chunks_is_redacted(stub: Stub) -> None:
    up = make([entry("alias", "echo", stub.base)])
    secret = "ana.gomez@example.com"
    try:
        for holdback in (0, 4, 16, 128):
            stub.script(
                "echo",
                {
                    "chunks": [
                        {"content": "Please write to ana.go", "role": "assistant"},
                        {"delay_ms": 10},
                        {"content": "mez@example.com today."},
                        {"finish_reason": "stop"},
                    ]
                },
            )
            s = await up.open_stream("alias", ask(stream=True))
            guard = StreamGuard(redact_emails, holdback=holdback)
            pieces = [p async for p in guard_stream(s, guard)]
            await s.aclose()
            released = [
                e["choices"][0]["delta"].get("content") or ""
                for e in (decode_chunk(ev) for ev in _parse(pieces))
                if e and e["choices"]
            ]
            assert "".join(released) == "Please write to <EMAIL_ADDRESS_1> today."
            for piece in released:
                for i in range(len(secret) - 2):
                    assert secret[i : i + 3] not in piece, (holdback, piece)
            assert b"ana.go" not in b"".join(pieces) and b"example.com" not in b"".join(pieces)
    finally:
        await up.aclose()


async def test_sse_quirks_on_the_wire(stub: Stub) -> None:
    stub.script(
        "echo",
        {
            "chunks": [
                {"raw": ": keep-alive\n\n"},
                {"content": "Hello", "role": "assistant", "split_at": 17},
                {"raw": "data:\n\n"},
                {"raw": ": ping\r\n\r\n"},
                {"content": " wonderful", "crlf": True, "split_at": 40},
                {"content": " world", "split_at": 7},
                {"finish_reason": "stop"},
                {"raw": 'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"echo",'},
                {"raw": '"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}'},
            ],
            "done": False,  # the last event has no trailing blank line and no [DONE]
        },
    )
    up = make([entry("alias", "echo", stub.base)])
    try:
        chunks = await collect(await up.open_stream("alias", ask(stream=True)))
    finally:
        await up.aclose()
    assert text_of(chunks) == "Hello wonderful world"
    assert chunks[-1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


async def test_tool_call_deltas_are_reassembled_and_released_whole(stub: Stub) -> None:
    stub.script(
        "echo",
        {
            "chunks": [
                {"tool_call": {"index": 0, "id": "call_1", "name": "get_weather", "arguments": ""}},
                {"tool_call": {"index": 0, "arguments": '{"city":'}},
                {"tool_call": {"index": 1, "id": "call_2", "name": "get_time", "arguments": '{"tz": "UTC"}'}},
                {"tool_call": {"index": 0, "arguments": ' "Paris"}'}},
                {"finish_reason": "tool_calls"},
            ]
        },
    )
    up = make([entry("alias", "echo", stub.base)])
    seen: list[list[dict[str, Any]]] = []

    async def check_tools(calls: list[dict[str, Any]]) -> tuple[Verdict, list[dict[str, Any]]]:
        seen.append(calls)
        return Verdict.ALLOW, calls

    try:
        s = await up.open_stream("alias", ask(stream=True))
        guard = StreamGuard(redact_emails, check_tools=check_tools)
        pieces = [p async for p in guard_stream(s, guard)]
        await s.aclose()
    finally:
        await up.aclose()
    assert seen == [
        [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'},
            },
        ]
    ]
    events = [decode_chunk(e) for e in _parse(pieces)]
    tool_events = [e for e in events if e and e["choices"] and "tool_calls" in e["choices"][0]["delta"]]
    assert len(tool_events) == 1
    assert (
        tool_events[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'
    )
    assert guard.finish_reasons() == ["tool_calls"]


# ---------------------------------------------------------------------------------------- error mapping

ERROR_CASES = [
    ({"status": 400, "error": {"message": "max_tokens is too large: 99999", "type": "invalid_request_error"}},
     UpstreamBadRequest, 400),
    ({"status": 401, "error": {"message": "Incorrect API key provided: sk-te****"}},
     UpstreamUnavailable, 502),
    ({"status": 429, "error": {"message": "Rate limit reached"}}, UpstreamRateLimited, 429),
    ({"status": 500, "error": {"message": "boom", "type": "server_error"}}, UpstreamUnavailable, 502),
    ({"delay_ms": 1500}, UpstreamTimeout, 504),
]  # fmt: skip


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("script", "error", "status"), ERROR_CASES)
async def test_error_mapping(
    stub: Stub, path: str, stream: bool, script: dict[str, Any], error: type[UpstreamError], status: int
) -> None:
    up = make([entry("alias", "echo", stub.base, path)], timeout=0.5, num_retries=0)
    stub.script("echo", script)
    try:
        with pytest.raises(error) as caught:
            if stream:
                await collect(await up.open_stream("alias", ask(stream=True)))
            else:
                await up.complete("alias", ask())
    finally:
        await up.aclose()
    err = caught.value
    assert type(err) is error and err.status == status
    assert err.__cause__ is not None or path == "lean"
    if error is UpstreamBadRequest:
        assert "max_tokens is too large" in err.message
    if script.get("status") == 401:
        assert "sk-te" not in err.message  # the upstream's text may echo the key: never passed on
    assert stub.calls("echo") == 1


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True])
async def test_connection_refused_is_unavailable(path: str, stream: bool) -> None:
    up = make([entry("alias", "echo", f"http://127.0.0.1:{free_port()}/v1", path)], timeout=2.0)
    try:
        with pytest.raises(UpstreamUnavailable) as caught:
            if stream:
                await collect(await up.open_stream("alias", ask(stream=True)))
            else:
                await up.complete("alias", ask())
    finally:
        await up.aclose()
    assert caught.value.status == 502 and caught.value.__cause__ is not None


async def test_invalid_json_and_broken_stream_are_unavailable(stub: Stub) -> None:
    up = make([entry("alias", "echo", stub.base)])
    try:
        stub.script("echo", {"chunks": [{"content": "fine"}, {"raw": "data: {not json\n\n"}]})
        s = await up.open_stream("alias", ask(stream=True))
        with pytest.raises(UpstreamUnavailable, match="invalid JSON"):
            await collect(s)
        stub.script("echo", {"chunks": [{"content": "half"}, {"disconnect": True}]})
        s = await up.open_stream("alias", ask(stream=True))
        with pytest.raises(UpstreamUnavailable):
            await collect(s)
        stub.script("echo", {"chunks": [{"content": "x"}, {"error": {"message": "overloaded", "code": 503}}]})
        s = await up.open_stream("alias", ask(stream=True))
        with pytest.raises(UpstreamUnavailable):
            await collect(s)
        # the non-streamed body is not JSON
        stub.script("echo", {"status": 200, "chunks": []}, times=None)
        stub.state.scripts.clear()
    finally:
        await up.aclose()
    # errors after the first chunk are never retried
    assert stub.calls("echo") == 3


async def test_stalled_stream_times_out_and_is_not_retried(stub: Stub) -> None:
    up = make([entry("alias", "echo", stub.base)], timeout=0.3, num_retries=2)
    stub.script("echo", {"chunks": [{"content": "start"}, {"delay_ms": 1500}, {"content": "late"}]})
    try:
        s = await up.open_stream("alias", ask(stream=True))
        with pytest.raises(UpstreamTimeout):
            await collect(s)
    finally:
        await up.aclose()
    assert stub.calls("echo") == 1


async def test_unknown_alias_and_bad_config() -> None:
    up = make([])
    with pytest.raises(NotFound) as caught:
        await up.complete("nope", ask())
    assert caught.value.code == "model_not_found" and caught.value.status == 404
    with pytest.raises(ConfigError):
        make([{"model_name": "x", "litellm_params": {"model": "hosted_vllm/llama"}}])
    up = make([{"model_name": "x", "litellm_params": {"model": "anthropic/claude-3-5-sonnet"}}])
    assert up.deployments("x")[0].path == "litellm"
    assert up.has_model("x") and up.model_names() == ["x"]


# ---------------------------------------------------------------------------------------- retries & fallbacks


@pytest.mark.parametrize("path", PATHS)
async def test_retry_then_success_counts_two_calls(stub: Stub, path: str) -> None:
    up = make([entry("alias", "echo", stub.base, path)], num_retries=2)
    stub.script("echo", {"status": 503}, times=1)
    try:
        resp = await up.complete("alias", ask("again"))
    finally:
        await up.aclose()
    assert resp["choices"][0]["message"]["content"] == "again"
    assert stub.calls("echo") == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_retries_exhausted_and_no_retry_on_bad_request(stub: Stub, stream: bool) -> None:
    up = make([entry("alias", "echo", stub.base)], num_retries=2)

    async def call() -> None:
        if stream:
            await collect(await up.open_stream("alias", ask(stream=True)))
        else:
            await up.complete("alias", ask())

    try:
        stub.script("echo", {"status": 500})
        with pytest.raises(UpstreamUnavailable):
            await call()
        assert stub.calls("echo") == 3
        stub.state.reset()
        stub.script("echo", {"status": 400, "error": {"message": "bad"}})
        with pytest.raises(UpstreamBadRequest):
            await call()
        assert stub.calls("echo") == 1
        stub.state.reset()
        stub.script("echo", {"status": 401})
        with pytest.raises(UpstreamUnavailable):
            await call()
        assert stub.calls("echo") == 1  # bad credentials are not retried
        stub.state.reset()
        stub.script("echo", {"status": 404})
        with pytest.raises(UpstreamUnavailable) as caught:
            await call()
        assert caught.value.code == "upstream_model_not_found" and stub.calls("echo") == 1
    finally:
        await up.aclose()


async def test_stream_retried_before_first_chunk(stub: Stub) -> None:
    up = make([entry("alias", "echo", stub.base)], num_retries=1)
    stub.script("echo", {"chunks": [{"disconnect": True}]}, times=1)
    try:
        chunks = await collect(await up.open_stream("alias", ask("retried stream", stream=True)))
    finally:
        await up.aclose()
    assert text_of(chunks) == "retried stream"
    assert stub.calls("echo") == 2


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("failure", [{"status": 500}, {"status": 429}, {"delay_ms": 1500}])
async def test_fallback_to_other_alias(stub: Stub, path: str, failure: dict[str, Any]) -> None:
    up = make(
        [entry("primary", "broken", stub.base, path), entry("backup", "echo", stub.base, path)],
        num_retries=1,
        timeout=0.5,
        fallbacks=[{"primary": ["backup"]}],
    )
    stub.script("broken", failure)
    try:
        resp = await up.complete("primary", ask("fell back"))
        chunks = await collect(await up.open_stream("primary", ask("fell back", stream=True)))
    finally:
        await up.aclose()
    assert resp["choices"][0]["message"]["content"] == "fell back"
    assert text_of(chunks) == "fell back"
    assert stub.calls("broken") == 4  # (1 + 1 retry) x 2 requests
    assert stub.calls("echo") == 2


# ---------------------------------------------------------------------------------------- telemetry


@pytest.fixture()
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_span_per_call_with_genai_attributes_and_no_content(
    stub: Stub, spans: InMemorySpanExporter
) -> None:
    up = make([entry("alias", "echo", stub.base)])
    try:
        await up.complete("alias", ask("secret words here", max_tokens=50))
        await collect(await up.open_stream("alias", ask("secret words here", stream=True)))
    finally:
        await up.aclose()
    done = [s for s in spans.get_finished_spans() if s.name == "chat echo"]
    assert len(done) == 2
    for span in done:
        a = dict(span.attributes or {})
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.request.model"] == "echo"
        assert a["gen_ai.response.model"] == "echo"
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert a["gen_ai.response.finish_reasons"] == ("stop",)
        assert a["server.address"] == "127.0.0.1" and isinstance(a["server.port"], int)
        assert "secret" not in orjson.dumps({k: str(v) for k, v in a.items()}).decode()


# A deployment the gateway cannot call as configured (``config check`` refuses these; a config
# built without the check can still hold them): a server-side fault, never a 400 blaming the
# client, and no library internals in the message.
MISCONFIGURED = [
    pytest.param({"model": "nosuchprovider/whatever", "api_key": "k"}, id="litellm-unknown-provider"),
    pytest.param(
        {"model": "m", "rollguard_path": "litellm", "custom_llm_provider": "nope", "api_key": "k"},
        id="litellm-unknown-custom-provider",
    ),
    pytest.param({"model": "openai/m", "api_base": "not a url", "api_key": "k"}, id="lean-bad-api-base"),
]


@pytest.mark.parametrize("params", MISCONFIGURED)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_misconfigured_deployment_is_a_server_fault(params: dict[str, Any], stream: bool) -> None:
    up = make([{"model_name": "alias", "litellm_params": params}])
    try:
        with pytest.raises(UpstreamUnavailable) as caught:
            if stream:
                await collect(await up.open_stream("alias", ask(stream=True)))
            else:
                await up.complete("alias", ask())
    finally:
        await up.aclose()
    err = caught.value
    assert (err.status, err.code, err.type) == (502, "upstream_misconfigured", "upstream_error")
    assert "litellm" not in err.message.lower()
    assert "docs.litellm.ai" not in err.message and "LLM Provider" not in err.message
