"""OpenTelemetry setup: the only module that imports the OpenTelemetry *SDK*.

Exporters are chosen by the standard variables (OpenTelemetry SDK environment variable spec):
``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` = ``otlp`` | ``console`` | ``none`` and
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``..._PROTOCOL`` for OTLP (HTTP/protobuf). Unlike the SDK's
default, when neither an exporter nor an endpoint is set, nothing is exported and spans are not
recorded: a gateway on a laptop should not retry a collector that does not exist.

Spans carry GenAI semantic-convention attributes (``gen_ai.request.model``, ``gen_ai.usage.*``) and
rollguard decisions (policy id, verdict, score); never message content.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

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

log = logging.getLogger("rollguard.telemetry")


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
