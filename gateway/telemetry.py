"""OpenTelemetry setup: the only module that imports the OpenTelemetry *SDK*.

Exporters are chosen by the standard variables (OpenTelemetry SDK environment variable spec):
``OTEL_TRACES_EXPORTER`` = ``otlp`` | ``console`` | ``none`` and ``OTEL_METRICS_EXPORTER`` = ``otlp``
| ``console`` | ``prometheus`` | ``none`` (comma-separated lists allowed), ``OTEL_EXPORTER_OTLP_*``
for OTLP (HTTP/protobuf), ``OTEL_EXPORTER_PROMETHEUS_HOST`` / ``_PORT`` for ``prometheus``. Any
other name (``jaeger``, ``zipkin``, a typo) is named in one startup warning and ignored. Unlike the
SDK's default, when neither an exporter nor an endpoint is set, nothing is exported and spans are
not recorded: a gateway on a laptop should not retry a collector that does not exist.

The config's ``telemetry.prometheus`` (``rollguard.telemetry_settings``) adds a Prometheus reader
(``opentelemetry-exporter-prometheus``) on a registry of this app's own, served by
``gateway.metrics_endpoint``.

Spans carry GenAI semantic-convention attributes (``gen_ai.request.model``, ``gen_ai.usage.*``) and
rollguard decisions (policy id, verdict, score); never message content. The chat service writes
its spans and metrics only through the ``record_*`` functions here (instruments:
``gateway.genai_metrics``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
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

from gateway.genai_metrics import GatewayMetrics
from policies.pipeline import StageResult
from rollguard.telemetry_settings import PrometheusSettings, TelemetrySettings
from rollguard.types import Decision, Interaction

__all__ = [
    "GatewayMetrics",
    "Telemetry",
    "model_label",
    "record_completion",
    "record_outcome",
    "record_policy_errors",
    "record_rejection",
    "record_request",
    "record_stage",
    "setup_telemetry",
]

log = logging.getLogger("rollguard.telemetry")
_gateway_log = logging.getLogger("rollguard.gateway")

KNOWN_EXPORTERS = {
    "TRACES": ("otlp", "console", "none"),
    "METRICS": ("otlp", "console", "prometheus", "none"),
}
"""The ``OTEL_{kind}_EXPORTER`` names this gateway acts on."""
PROMETHEUS_DEFAULT_PORT = 9464
"""``OTEL_EXPORTER_PROMETHEUS_PORT``'s default (OpenTelemetry SDK environment variable spec)."""


def _exporter_choices(kind: str) -> tuple[list[str], list[str]]:
    """``(known, unknown)`` exporter names of ``OTEL_{kind}_EXPORTER`` (``otlp`` when only an OTLP
    endpoint is set; none when nothing is)."""
    explicit = os.environ.get(f"OTEL_{kind}_EXPORTER")
    if explicit:
        names = [n.strip().lower() for n in explicit.split(",") if n.strip()]
        known = KNOWN_EXPORTERS[kind]
        return [n for n in names if n in known], [n for n in names if n not in known]
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(f"OTEL_EXPORTER_OTLP_{kind}_ENDPOINT"):
        return ["otlp"], []
    return [], []


def _warn_unknown_exporters() -> tuple[list[str], list[str]]:
    """The known trace and metric exporter names; one warning naming every unknown one."""
    traces, bad_traces = _exporter_choices("TRACES")
    metric_names, bad_metrics = _exporter_choices("METRICS")
    parts = [f"OTEL_TRACES_EXPORTER={n!r}" for n in bad_traces]
    parts += [f"OTEL_METRICS_EXPORTER={n!r}" for n in bad_metrics]
    if parts:
        log.warning(
            "unsupported OpenTelemetry exporter(s) ignored: %s (traces: %s; metrics: %s)",
            ", ".join(parts),
            ", ".join(KNOWN_EXPORTERS["TRACES"]),
            ", ".join(KNOWN_EXPORTERS["METRICS"]),
        )
    return traces, metric_names


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
class Telemetry:
    """What ``setup_telemetry`` started for one app: its instruments, the Prometheus registry
    (``None`` unless enabled) and where it is served, and what ``close`` shuts down."""

    metrics: GatewayMetrics
    prometheus: PrometheusSettings | None = None
    registry: Any = None  # prometheus_client.CollectorRegistry
    _owned: MeterProvider | None = None
    _closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        """Stop the Prometheus port server and shut down an app-owned meter provider."""
        for close in reversed(self._closers):
            close()
        self._closers.clear()
        if self._owned is not None:
            self._owned.shutdown()
            self._owned = None


def _install_tracing(resource: Resource, span_exporter: SpanExporter | None, choices: list[str]) -> None:
    exporters = [span_exporter] if span_exporter is not None else [_span_exporter(c) for c in choices]
    found = [e for e in exporters if e is not None]
    if not found or isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider(resource=resource)
    for exporter in found:
        if span_exporter is not None:
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor

            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing enabled (%s)", ", ".join(type(e).__name__ for e in found))


def _prometheus_settings(settings: TelemetrySettings, metric_choices: list[str]) -> PrometheusSettings | None:
    """The config's Prometheus endpoint; else ``OTEL_METRICS_EXPORTER=prometheus``'s (its own port,
    ``OTEL_EXPORTER_PROMETHEUS_HOST`` / ``_PORT``, default localhost:9464); else None."""
    if settings.prometheus.enabled:
        return settings.prometheus
    if "prometheus" in metric_choices:
        return PrometheusSettings(
            enabled=True,
            host=os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost"),
            port=int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", str(PROMETHEUS_DEFAULT_PORT))),
        )
    return None


def setup_telemetry(
    settings: TelemetrySettings | None = None,
    *,
    variants: Iterable[str] = (),
    workers: int = 1,
    service_name: str = "rollguard-gateway",
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> Telemetry:
    """Install the tracer provider (once per process) and this app's metric readers; return its
    ``Telemetry``. ``variants``: the configured rollout variant names (metric label bound);
    ``workers``: gateway processes (a Prometheus port server tries ``port .. port + workers - 1``).
    ``span_exporter`` / ``metric_reader`` override the environment (tests pass in-memory ones).

    Metrics go to a meter provider of this app's readers (OTLP / console from the environment,
    Prometheus, ``metric_reader``), made the global one when none is installed yet; with no
    reader, to the global provider (a no-op unless something installed one). Raises
    ``ConfigError`` when no Prometheus port is free.
    """
    settings = settings or TelemetrySettings()
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    trace_choices, metric_choices = _warn_unknown_exporters()
    _install_tracing(resource, span_exporter, trace_choices)
    readers = [r for r in (_metric_reader(c) for c in metric_choices) if r is not None]
    if metric_reader is not None:
        readers.append(metric_reader)
    prom = _prometheus_settings(settings, metric_choices)
    registry = None
    if prom is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=True)
        readers.append(PrometheusMetricReader(registry=registry))
    owned: MeterProvider | None = None
    if readers:
        provider = MeterProvider(resource=resource, metric_readers=readers)
        if isinstance(metrics.get_meter_provider(), MeterProvider):
            owned = provider  # another app in this process installed the global one
        else:
            metrics.set_meter_provider(provider)
        meter = provider.get_meter("rollguard.gateway")
    else:
        meter = metrics.get_meter("rollguard.gateway")
    tel = Telemetry(GatewayMetrics(meter, variants), prom, registry, owned)
    if prom is not None and prom.port is not None:
        from gateway.metrics_endpoint import serve_on_port

        try:
            from_env = not settings.prometheus.enabled  # OTEL_METRICS_EXPORTER=prometheus's port
            tel._closers.append(serve_on_port(registry, prom.host, prom.port, workers, from_env=from_env))
        except Exception:
            tel.close()
            raise
    return tel


# ----------------------------------------------------------------------------- chat completion


UNKNOWN_MODEL = "unknown"
"""The span-name part, ``gen_ai.request.model`` and ``model`` label of a model name that is not a
configured alias (issue 10: a client's raw ``model`` once reached traces and metrics, and any
client could create unlimited metric series)."""


def model_label(model: object, configured: Callable[[str], bool]) -> str:
    """``model`` when ``configured(model)`` says it is a configured alias, else ``"unknown"``:
    the only form of the client's ``model`` that spans and metric labels carry."""
    return model if isinstance(model, str) and configured(model) else UNKNOWN_MODEL


def record_request(span: trace.Span, interaction: Interaction, label: str) -> None:
    """The attributes of a chat request's server span, set when it starts; ``label``: the model
    alias from ``model_label`` (never the raw client value)."""
    if span.is_recording():
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", label)
        span.set_attribute("http.request.method", "POST")
        span.set_attribute("http.route", "/v1/chat/completions")
        span.set_attribute("rollguard.interaction.id", interaction.id)
        span.set_attribute("rollguard.tenant", interaction.tenant)
        span.set_attribute("rollguard.stream", interaction.stream)


def record_stage(
    metrics: GatewayMetrics, span: trace.Span, result: StageResult, interaction: Interaction
) -> None:
    """One stage's decisions: the decisions counter (with ``interaction``'s variant), policy
    failures (counter and a warning log line), and the stage verdict and blocking policy on
    ``span``."""
    metrics.record_decisions(result.decisions, metrics.variant(interaction))
    for d in result.decisions:
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


def record_outcome(
    metrics: GatewayMetrics, span: trace.Span, interaction: Interaction, outcome: str, label: str
) -> None:
    """A finished request: its metrics (``GatewayMetrics.record_finished``; model ``label`` from
    ``model_label``), and verdict, outcome, status and token usage on ``span``. A status of 500
    or more (an upstream fault, a guardrail failure, an internal error) sets the span's status to
    ERROR with ``error.type``; a client error (4xx, 499) leaves it unset (OpenTelemetry HTTP
    semantic conventions, server spans)."""
    metrics.record_finished(interaction, outcome, label)
    if span.is_recording():
        span.set_attribute("rollguard.verdict", interaction.verdict.value)
        span.set_attribute("rollguard.outcome", outcome)
        span.set_attribute("http.response.status_code", interaction.status)
        variant = interaction.metadata.get("variant")
        if variant:
            span.set_attribute("rollguard.variant", metrics.variant(interaction))
        if interaction.usage:
            span.set_attribute("gen_ai.usage.input_tokens", interaction.usage.get("prompt_tokens", 0))
            span.set_attribute("gen_ai.usage.output_tokens", interaction.usage.get("completion_tokens", 0))
        if interaction.status >= 500:
            code = interaction.error_code or outcome
            span.set_attribute("error.type", code)
            span.set_status(trace.Status(trace.StatusCode.ERROR, code))


def record_rejection(span: trace.Span, exc: BaseException) -> None:
    """A request refused before its policies ran, on its (still open) span: an exception event
    naming the error class and code only (the message may quote what the client sent, such as
    an unknown model name), and ``error.type``. The status stays unset for a client error
    (``exc.status`` < 500, HTTP semantic conventions); ERROR otherwise."""
    if span.is_recording():
        code = getattr(exc, "code", None)
        text = f"{type(exc).__name__}" + (f" ({code})" if code else "")
        span.add_event("exception", {"exception.type": type(exc).__name__, "exception.message": text})
        span.set_attribute("error.type", code or type(exc).__name__)
        if getattr(exc, "status", 500) >= 500:
            span.set_status(trace.Status(trace.StatusCode.ERROR, text))
