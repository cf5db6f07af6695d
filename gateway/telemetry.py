"""OpenTelemetry setup: the only module that imports the OpenTelemetry *SDK*.

Exporters are chosen by the standard variables (OpenTelemetry SDK environment variable spec):
``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` = ``otlp`` | ``console`` | ``none`` and
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``..._PROTOCOL`` for OTLP (HTTP/protobuf). Unlike the SDK's
default, when neither an exporter nor an endpoint is set, nothing is exported and spans are not
recorded: a gateway on a laptop should not retry a collector that does not exist.

Spans carry GenAI semantic-convention attributes (``gen_ai.request.model``, ``gen_ai.usage.*``) and
rollguard decisions (policy id, verdict, score); never message content. The chat service writes
its spans and metrics only through the ``record_*`` functions here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from policies.pipeline import StageResult
from rollguard.types import Decision, Interaction

log = logging.getLogger("rollguard.telemetry")
_gateway_log = logging.getLogger("rollguard.gateway")


def _exporter_choice(kind: str) -> str:
    explicit = os.environ.get(f"OTEL_{kind}_EXPORTER")
    if explicit:
        return explicit.split(",")[0].strip().lower()
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(f"OTEL_EXPORTER_OTLP_{kind}_ENDPOINT"):
        return "otlp"
    return "none"


def _span_exporter(choice: str) -> SpanExporter | None:
    if choice == "console":
        return ConsoleSpanExporter()
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return None


def _metric_reader(choice: str) -> MetricReader | None:
    if choice == "console":
        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return PeriodicExportingMetricReader(OTLPMetricExporter())
    return None


@dataclass
class GatewayMetrics:
    """The gateway's instruments (names follow ``rollguard.*`` plus the GenAI ``gen_ai.client.*``
    conventions). Units: durations in ms, tokens as counts."""

    meter: metrics.Meter
    requests: metrics.Counter = field(init=False)
    decisions: metrics.Counter = field(init=False)
    policy_errors: metrics.Counter = field(init=False)
    request_duration: metrics.Histogram = field(init=False)
    token_usage: metrics.Counter = field(init=False)

    def __post_init__(self) -> None:
        m = self.meter
        self.requests = m.create_counter(
            "rollguard.requests", description="chat completion requests by outcome"
        )
        self.decisions = m.create_counter(
            "rollguard.policy.decisions", description="policy decisions by verdict"
        )
        self.policy_errors = m.create_counter(
            "rollguard.policy.errors", description="policy failures (exception or timeout)"
        )
        self.request_duration = m.create_histogram(
            "rollguard.request.duration", unit="ms", description="gateway request latency"
        )
        self.token_usage = m.create_counter("gen_ai.client.token.usage.total", unit="{token}")


def setup_telemetry(
    service_name: str = "rollguard-gateway",
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> GatewayMetrics:
    """Install tracer and meter providers (once per process) and return the gateway's instruments.

    ``span_exporter`` / ``metric_reader`` override the environment (tests pass in-memory ones).
    """
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    exporter = span_exporter or _span_exporter(_exporter_choice("TRACES"))
    if exporter is not None and not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(resource=resource)
        if span_exporter is not None:
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor

            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        log.info("tracing enabled (%s)", type(exporter).__name__)
    reader = metric_reader or _metric_reader(_exporter_choice("METRICS"))
    if reader is not None and not isinstance(metrics.get_meter_provider(), MeterProvider):
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    return GatewayMetrics(metrics.get_meter("rollguard.gateway"))


def shutdown_telemetry() -> None:
    """Flush and shut down the SDK providers (no-op when none were installed)."""
    tp = trace.get_tracer_provider()
    if isinstance(tp, TracerProvider):
        tp.shutdown()
    mp = metrics.get_meter_provider()
    if isinstance(mp, MeterProvider):
        mp.shutdown()


# ----------------------------------------------------------------------------- chat completion


def record_request(span: trace.Span, interaction: Interaction) -> None:
    """The attributes of a chat request's server span, set when it starts."""
    if span.is_recording():
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", interaction.model)
        span.set_attribute("rollguard.interaction.id", interaction.id)
        span.set_attribute("rollguard.tenant", interaction.tenant)
        span.set_attribute("rollguard.stream", interaction.stream)


def record_stage(metrics: GatewayMetrics, span: trace.Span, result: StageResult) -> None:
    """One stage's decisions: the decisions counter, policy failures (counter and a warning log
    line), and the stage verdict and blocking policy on ``span``."""
    for d in result.decisions:
        metrics.decisions.add(
            1,
            {"policy": d.policy, "verdict": d.verdict.value, "stage": d.stage.value, "enforced": d.enforced},
        )
        if d.error:
            metrics.policy_errors.add(1, {"policy": d.policy, "error": d.error})
            _gateway_log.warning(
                "policy %s failed at %s: %s (on_error -> %s)",
                d.policy,
                d.stage.value,
                d.error,
                d.verdict.value,
            )
    if span.is_recording() and result.decisions:
        span.set_attribute(f"rollguard.{result.stage.value}.verdict", result.verdict.value)
        if result.blocked_by is not None:
            span.set_attribute("rollguard.blocked_by", result.blocked_by.policy)


def record_policy_errors(metrics: GatewayMetrics, decisions: Iterable[Decision]) -> None:
    """The policy-failure counter for stream-window decisions (checked many times per stream)."""
    for d in decisions:
        if d.error:
            metrics.policy_errors.add(1, {"policy": d.policy, "error": d.error})


def record_completion(span: trace.Span, resp: Mapping[str, Any]) -> None:
    """The response model and finish reasons of a non-streamed completion on ``span``."""
    if span.is_recording():
        span.set_attribute("gen_ai.response.model", str(resp.get("model", "")))
        choices = resp.get("choices") or []
        span.set_attribute("gen_ai.response.finish_reasons", [str(c.get("finish_reason")) for c in choices])


def record_outcome(metrics: GatewayMetrics, span: trace.Span, interaction: Interaction, outcome: str) -> None:
    """A finished request: the requests counter (by ``outcome``, model, stream), its duration
    (``interaction.latency_ms``, ms), and verdict, outcome, status and token usage on ``span``."""
    metrics.requests.add(1, {"outcome": outcome, "model": interaction.model, "stream": interaction.stream})
    metrics.request_duration.record(interaction.latency_ms, {"model": interaction.model})
    if span.is_recording():
        span.set_attribute("rollguard.verdict", interaction.verdict.value)
        span.set_attribute("rollguard.outcome", outcome)
        span.set_attribute("http.response.status_code", interaction.status)
        if interaction.usage:
            span.set_attribute("gen_ai.usage.input_tokens", interaction.usage.get("prompt_tokens", 0))
            span.set_attribute("gen_ai.usage.output_tokens", interaction.usage.get("completion_tokens", 0))


def record_rejection(span: trace.Span, exc: BaseException) -> None:
    """A request refused before its policies ran, on its (still open) span: the exception event
    and ERROR status, as ``start_as_current_span`` records an exception leaving its block."""
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
