"""Where the Prometheus text exposition of the gateway's metrics is served
(``telemetry.prometheus``): a route of the gateway app behind the API keys (``path``), or a
``prometheus_client`` HTTP server on a port of its own. The registry is the app's own
(``gateway.telemetry.setup_telemetry``), fed by ``opentelemetry-exporter-prometheus``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from starlette.responses import Response

from gateway.runtime import runtime
from rollguard.errors import ConfigError

__all__ = ["mount_metrics_route", "serve_on_port"]

log = logging.getLogger("rollguard.telemetry")


def serve_on_port(
    registry: Any, host: str, port: int, workers: int = 1, *, from_env: bool = False
) -> Callable[[], None]:
    """Serve ``registry`` on the first free port of ``port .. port + workers - 1`` (each gateway
    process of ``serve --workers N`` is its own scrape target); returns the server's stop
    function. Raises ``ConfigError`` when none is free, naming where the port came from:
    ``telemetry.prometheus.port``, or with ``from_env`` the environment's
    ``OTEL_EXPORTER_PROMETHEUS_PORT`` (``OTEL_METRICS_EXPORTER=prometheus``)."""
    last: OSError | None = None
    for p in range(port, port + max(1, workers)):
        try:
            server, thread = start_http_server(p, addr=host, registry=registry)
        except OSError as exc:
            last = exc
            continue
        log.info("prometheus metrics on http://%s:%d/metrics", host, p)
        return _stopper(server, thread)
    ports = f"{port}" if workers <= 1 else f"{port}..{port + workers - 1}"
    message = f"no free port for the Prometheus endpoint at {host}:{ports} ({last})"
    if from_env:
        raise ConfigError(message, source="environment", field="OTEL_EXPORTER_PROMETHEUS_PORT")
    raise ConfigError(message, field="telemetry.prometheus.port")


def _stopper(server: Any, thread: Any) -> Callable[[], None]:
    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def mount_metrics_route(app: FastAPI, path: str) -> None:
    """``GET path`` on ``app``: the text exposition of ``app.state.metrics_registry``, for a
    caller with an API key (401 otherwise, as the operator routes)."""

    async def metrics_text(request: Request) -> Response:
        rt = runtime(request)
        rt.auth.tenant_for(request)
        registry = getattr(request.app.state, "metrics_registry", None)
        body = generate_latest(registry) if registry is not None else b""
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(path, metrics_text, methods=["GET"], include_in_schema=False)
