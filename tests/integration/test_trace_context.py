"""W3C trace context in and out (issue 12): a trace the caller starts holds the gateway's server
span, its policy spans (stream-stage window checks included) and the upstream call's span, and
the upstream receives a ``traceparent`` of that same trace, on the lean aiohttp transport and on
the litellm path. Failures: a 5xx marks the server span ERROR, a 4xx does not (HTTP semantic
conventions for server spans). Spans are collected with the in-memory exporter of the test
process; the gateway, the upstream stub and the HTTP traffic are real."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.integration.conftest import SPANS, GatewayFactory, Stub

pytestmark = pytest.mark.integration

caller = trace.get_tracer("test.caller")


def _models(stub: Stub) -> list[dict[str, Any]]:
    lean = {"model": "openai/echo", "api_base": stub.base_url, "api_key": "sk-test"}
    via_litellm = {**lean, "rollguard_path": "litellm"}
    down = {"model": "openai/down", "api_base": "http://127.0.0.1:9/v1", "api_key": "sk-test"}
    return [
        {"model_name": "echo", "litellm_params": lean},
        {"model_name": "echo-litellm", "litellm_params": via_litellm},
        {"model_name": "down", "litellm_params": down},
    ]


def _chat(url: str, model: str, *, stream: bool, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        timeout=30,
        headers=headers,
        json={
            "model": model,
            "stream": stream,
            "messages": [{"role": "user", "content": "tell me about the weather in a long sentence"}],
        },
    )


def _traced_call(url: str, model: str, stream: bool) -> tuple[int, int, httpx.Response]:
    """One request inside a caller span; ``(trace_id, caller_span_id, response)``."""
    with caller.start_as_current_span("caller") as span:
        headers: dict[str, str] = {}
        inject(headers)
        r = _chat(url, model, stream=stream, headers=headers)
        ctx = span.get_span_context()
    return ctx.trace_id, ctx.span_id, r


def _in_trace(trace_id: int) -> list[ReadableSpan]:
    return [s for s in SPANS.get_finished_spans() if s.context is not None and s.context.trace_id == trace_id]


@pytest.mark.parametrize("stream", [False, True], ids=["completion", "stream"])
@pytest.mark.parametrize("model", ["echo", "echo-litellm"], ids=["lean", "litellm"])
def test_the_callers_trace_holds_the_gateway_and_upstream_spans(
    gateway: GatewayFactory, stub: Stub, model: str, stream: bool
) -> None:
    with gateway(model_list=_models(stub)) as url:
        trace_id, caller_span, r = _traced_call(url, model, stream)
        assert r.status_code == 200, r.text
        _ = r.text  # the stream is read to its end
    spans = _in_trace(trace_id)
    server = [s for s in spans if s.kind is SpanKind.SERVER and s.name == f"chat {model}"]
    assert len(server) == 1, [s.name for s in spans]
    root = server[0]
    assert root.parent is not None and root.parent.span_id == caller_span  # joined, not a new trace
    assert root.attributes is not None
    assert root.attributes["gen_ai.operation.name"] == "chat"
    assert root.attributes["gen_ai.request.model"] == model
    assert root.attributes["gen_ai.response.model"] == "echo"
    assert root.attributes["gen_ai.usage.output_tokens"] > 0
    assert root.status.status_code is StatusCode.UNSET
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(clients) == 1 and clients[0].parent is not None
    assert clients[0].parent.span_id == root.context.span_id
    policies = [s for s in spans if s.name.startswith("policy ")]
    assert policies and all(
        p.parent is not None and p.parent.span_id == root.context.span_id for p in policies
    )
    if stream:
        stages = {(p.attributes or {}).get("rollguard.policy.stage") for p in policies}
        assert "stream" in stages  # the window checks of the stream have their spans
    # what the upstream received: a traceparent of the caller's trace, parented on the client span
    sent = [q for q in stub.requests() if "traceparent" in q["headers"]]
    assert sent, stub.requests()
    version, tid, parent, _flags = sent[-1]["headers"]["traceparent"].split("-")
    assert version == "00"
    assert int(tid, 16) == trace_id
    assert int(parent, 16) == clients[0].context.span_id


def test_stream_check_spans_are_capped(gateway: GatewayFactory, stub: Stub) -> None:
    """``telemetry.stream_check_spans``: only the first N window checks of a stream get spans."""
    with gateway(model_list=_models(stub), telemetry={"stream_check_spans": 1}) as url:
        trace_id, _, r = _traced_call(url, "echo", True)
        assert r.status_code == 200
        _ = r.text
    stream_spans = [
        s for s in _in_trace(trace_id) if (s.attributes or {}).get("rollguard.policy.stage") == "stream"
    ]
    policy_ids = {(s.attributes or {}).get("rollguard.policy.id") for s in stream_spans}
    assert stream_spans and len(stream_spans) == len(policy_ids)  # one check: one span per policy


def test_server_span_status_5xx_is_error_4xx_is_not(gateway: GatewayFactory, stub: Stub) -> None:
    with gateway(model_list=_models(stub)) as url:
        down_trace, _, down = _traced_call(url, "down", False)
        missing_trace, _, missing = _traced_call(url, "no-such-model", False)
        down_stream_trace, _, down_stream = _traced_call(url, "down", True)
    assert down.status_code >= 500 and down_stream.status_code >= 500
    assert missing.status_code == 404
    for tid in (down_trace, down_stream_trace):
        (root,) = [s for s in _in_trace(tid) if s.kind is SpanKind.SERVER]
        assert root.status.status_code is StatusCode.ERROR
        assert root.attributes is not None and root.attributes["error.type"]
    (refused,) = [s for s in _in_trace(missing_trace) if s.kind is SpanKind.SERVER]
    assert refused.status.status_code is StatusCode.UNSET
    assert refused.attributes is not None and refused.attributes["error.type"] == "model_not_found"
    assert refused.attributes["http.response.status_code"] == 404


def test_without_a_traceparent_the_request_starts_its_own_trace(gateway: GatewayFactory, stub: Stub) -> None:
    with gateway(model_list=_models(stub)) as url:
        r = _chat(url, "echo", stream=False, headers={})
        assert r.status_code == 200
    (root,) = [s for s in SPANS.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert root.parent is None
    sent = stub.requests()[-1]["headers"]["traceparent"]
    assert int(sent.split("-")[1], 16) == root.context.trace_id


def test_a_stream_that_fails_midway_marks_its_server_span_error(gateway: GatewayFactory, stub: Stub) -> None:
    """HTTP 200 was already sent; the mid-stream error event still makes the span ERROR."""
    stub.script(
        "echo",
        {
            "chunks": [
                {"content": "The weather today is "},
                {"error": {"message": "overloaded", "type": "server_error", "code": "overloaded"}},
            ]
        },
    )
    with gateway(model_list=_models(stub)) as url:
        trace_id, _, r = _traced_call(url, "echo", True)
        assert r.status_code == 200
        assert "error" in r.text
    (root,) = [s for s in _in_trace(trace_id) if s.kind is SpanKind.SERVER]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None and root.attributes["rollguard.outcome"] == "upstream_error"
