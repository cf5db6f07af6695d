"""Telemetry setup (issue 12): an unknown ``OTEL_*_EXPORTER`` name is one startup warning (it was
silently ignored); ``OTEL_METRICS_EXPORTER=prometheus`` serves the metrics on its own port; a
Prometheus port in use moves to the next of ``port .. port + workers - 1``; metric label values
stay bounded (an unconfigured variant is ``other``)."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.genai_metrics import GatewayMetrics
from gateway.metrics_endpoint import serve_on_port
from gateway.telemetry import setup_telemetry
from rollguard.errors import ConfigError
from rollguard.types import Interaction
from tests.servers import free_port


def test_unknown_exporter_names_are_one_startup_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus,nosuch")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    with caplog.at_level(logging.WARNING, logger="rollguard.telemetry"):
        tel = setup_telemetry()
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings
        assert "OTEL_TRACES_EXPORTER='jaeger'" in warnings[0]
        assert "OTEL_METRICS_EXPORTER='nosuch'" in warnings[0]
        # the known one still acts: Prometheus on OTEL_EXPORTER_PROMETHEUS_PORT
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert list(text_string_to_metric_families(text)) is not None
    finally:
        tel.close()


def test_known_exporter_names_warn_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    with caplog.at_level(logging.WARNING, logger="rollguard.telemetry"):
        setup_telemetry().close()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_busy_otel_prometheus_port_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
        monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
        monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(busy.getsockname()[1]))
        with pytest.raises(ConfigError) as info:
            setup_telemetry()
    message = str(info.value)
    assert message.startswith("environment: OTEL_EXPORTER_PROMETHEUS_PORT: no free port"), message
    assert "telemetry.prometheus" not in message


def test_a_busy_prometheus_port_moves_to_the_next_worker_port() -> None:
    registry = CollectorRegistry()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=r"telemetry\.prometheus\.port"):
            serve_on_port(registry, "127.0.0.1", port, workers=1)
        try:
            stop = serve_on_port(registry, "127.0.0.1", port, workers=2)
        except ConfigError:
            pytest.skip(f"port {port + 1} is taken by something else on this machine")
        try:
            assert httpx.get(f"http://127.0.0.1:{port + 1}/metrics", timeout=5).status_code == 200
        finally:
            stop()


def test_variant_and_model_labels_are_bounded() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    m = GatewayMetrics(provider.get_meter("t"), variants=["blue"])
    for variant in ("blue", "control", "a-variant-nobody-configured", None):
        i = Interaction(id="x", created_ms=0, tenant="t", model="echo", stream=False, messages=[])
        i.latency_ms, i.upstream_ms = 5.0, 4.0
        if variant:
            i.metadata["variant"] = variant
        m.record_finished(i, "ok", "echo")
    data = reader.get_metrics_data()
    assert data is not None
    seen = {
        dp.attributes["variant"]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "rollguard.requests"
        for dp in metric.data.data_points
    }
    assert seen == {"blue", "control", "other", "none"}
    provider.shutdown()


def test_two_apps_on_one_meter_both_count() -> None:
    """The observable counters of a meter are registered once (the SDK ignores a second
    registration's callbacks): a second app's requests must still be counted."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("t")
    for m in (GatewayMetrics(meter), GatewayMetrics(meter)):
        i = Interaction(id="x", created_ms=0, tenant="t", model="echo", stream=False, messages=[])
        m.record_finished(i, "ok", "echo")
    data = reader.get_metrics_data()
    assert data is not None
    (total,) = [
        dp.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "rollguard.requests"
        for dp in metric.data.data_points
    ]
    assert total == 2
    provider.shutdown()
