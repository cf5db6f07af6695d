"""``gateway.upstream.spans`` (split out of the router, which stood at 497 of its 500 lines): the
attempt span's response attributes and its error ending, on real OpenTelemetry SDK spans (a local
provider with an in-memory exporter: the global one belongs to the integration tests)."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from gateway.upstream import router
from gateway.upstream.spans import end_span, finish_reasons, record_response
from gateway.upstream.stream import UpstreamStream
from rollguard.errors import UpstreamRateLimited


def _tracer() -> tuple[InMemorySpanExporter, TracerProvider]:
    out = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(out))
    return out, provider


def test_response_attributes_and_finish_reasons() -> None:
    out, provider = _tracer()
    span = provider.get_tracer("t").start_span("chat m")
    resp = {
        "id": "chatcmpl-1",
        "model": "m-2025",
        "usage": {"prompt_tokens": 7, "completion_tokens": "x"},
        "choices": [{"finish_reason": "stop"}, {"finish_reason": None}, "junk", {"finish_reason": "length"}],
    }
    reasons = finish_reasons(resp)
    assert reasons == ["stop", "length"]
    record_response(span, resp, reasons)
    end_span(span)
    [done] = out.get_finished_spans()
    attrs = dict(done.attributes or {})
    assert attrs["gen_ai.response.id"] == "chatcmpl-1" and attrs["gen_ai.response.model"] == "m-2025"
    assert attrs["gen_ai.usage.input_tokens"] == 7
    assert "gen_ai.usage.output_tokens" not in attrs  # not an int: left out
    assert attrs["gen_ai.response.finish_reasons"] == ("stop", "length")
    assert done.status.status_code is StatusCode.UNSET


def test_an_error_ends_the_span_with_its_type_hint_and_code() -> None:
    out, provider = _tracer()
    err = UpstreamRateLimited("busy")
    err.retry_after = 3.0
    end_span(provider.get_tracer("t").start_span("chat m"), err)
    [done] = out.get_finished_spans()
    attrs = dict(done.attributes or {})
    assert attrs["error.type"] == "UpstreamRateLimited" and attrs["rollguard.upstream.retry_after_s"] == 3.0
    assert done.status.status_code is StatusCode.ERROR
    assert done.status.description == "upstream_rate_limited"


def test_the_router_still_exports_the_stream_it_returns() -> None:
    assert router.UpstreamStream is UpstreamStream
    assert "UpstreamStream" in router.__all__
