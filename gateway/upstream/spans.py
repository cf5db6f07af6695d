"""The upstream attempt's span: one per attempt, ``chat {model}``, kind CLIENT, with the
OpenTelemetry GenAI semantic-convention attributes (``gen_ai.*``, ``server.address`` /
``server.port``, ``error.type``; OpenTelemetry's "Semantic conventions for generative client AI
spans"); never message content. Used by ``gateway.upstream.router`` (the attempts) and
``gateway.upstream.stream`` (a stream's span ends with the stream)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from gateway.upstream.transports import Deployment
from rollguard.errors import UpstreamError

__all__ = ["end_span", "finish_reasons", "record_response", "start_span"]

_TRACER = trace.get_tracer("rollguard.gateway.upstream")


def start_span(dep: Deployment, body: Mapping[str, Any], attempt: int, stream: bool) -> Span:
    """Start (not make current) the span of attempt ``attempt`` (0 = the first) on ``dep`` for the
    chat request ``body`` (its ``max_tokens`` / ``max_completion_tokens``, ``temperature`` and
    ``top_p`` become ``gen_ai.request.*`` when numbers; nothing else of the body is read)."""
    host, port = dep.server
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": dep.provider,
        "gen_ai.provider.name": dep.provider,
        "gen_ai.request.model": dep.model,
        "rollguard.model_alias": dep.alias,
        "rollguard.upstream.path": dep.path,
        "rollguard.upstream.attempt": attempt,
        "rollguard.upstream.stream": stream,
    }
    if host:
        attrs["server.address"] = host
    if port:
        attrs["server.port"] = port
    for key, attr in (
        ("max_tokens", "gen_ai.request.max_tokens"),
        ("max_completion_tokens", "gen_ai.request.max_tokens"),
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
    ):
        v = body.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            attrs[attr] = v
    return _TRACER.start_span(f"chat {dep.model}", kind=SpanKind.CLIENT, attributes=attrs)


def record_response(span: Span, resp: Mapping[str, Any], reasons: list[str]) -> None:
    """Set the response attributes of ``resp`` (a ``chat.completion``, or for a stream its model
    and usage): ``gen_ai.response.model`` / ``.id``, token usage, and ``reasons`` (the finish
    reasons) when not empty. No work when the span is not recording."""
    if not span.is_recording():
        return
    if isinstance(resp.get("model"), str):
        span.set_attribute("gen_ai.response.model", resp["model"])
    if isinstance(resp.get("id"), str):
        span.set_attribute("gen_ai.response.id", resp["id"])
    usage = resp.get("usage")
    if isinstance(usage, Mapping):
        if isinstance(usage.get("prompt_tokens"), int):
            span.set_attribute("gen_ai.usage.input_tokens", usage["prompt_tokens"])
        if isinstance(usage.get("completion_tokens"), int):
            span.set_attribute("gen_ai.usage.output_tokens", usage["completion_tokens"])
    if reasons:
        span.set_attribute("gen_ai.response.finish_reasons", reasons)


def end_span(span: Span, error: UpstreamError | None = None) -> None:
    """End ``span``; with ``error``: ``error.type`` (its class name), the upstream's retry hint
    (``rollguard.upstream.retry_after_s``, seconds) and status ERROR with the error's code."""
    if error is not None:
        span.set_attribute("error.type", type(error).__name__)
        if error.retry_after is not None:
            span.set_attribute("rollguard.upstream.retry_after_s", error.retry_after)
        span.set_status(Status(StatusCode.ERROR, error.code or ""))
    span.end()


def finish_reasons(resp: Mapping[str, Any]) -> list[str]:
    """The ``finish_reason`` of each choice of ``resp`` (a completion or a chunk) that has one."""
    out = []
    for c in resp.get("choices") or ():
        if isinstance(c, Mapping) and c.get("finish_reason"):
            out.append(str(c["finish_reason"]))
    return out
