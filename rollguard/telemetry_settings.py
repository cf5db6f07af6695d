"""The ``telemetry`` section of the config (``RollguardSettings.telemetry``): the Prometheus
endpoint and how many stream-stage policy checks get spans. OTLP and console exporters stay
chosen by the standard ``OTEL_*`` variables (``gateway.telemetry``).

Shape (YAML)::

    telemetry:
      prometheus:
        enabled: false        # opt-in
        path: /metrics        # on the gateway's own port, behind the API keys (as /v1/policies)
        port: null            # a port number: served there instead (no auth; bind host below)
        host: 127.0.0.1       # bind address of that port
      stream_check_spans: 32  # per stream: the first N window checks get policy spans (0: none)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["PrometheusSettings", "TelemetrySettings"]


class PrometheusSettings(BaseModel):
    """``telemetry.prometheus``: where the Prometheus text exposition is served. With ``port``
    set, each gateway process binds the first free port of ``port .. port + workers - 1``
    (one scrape target per process); without it, ``path`` is a route of the gateway app."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    path: str = "/metrics"
    port: int | None = Field(default=None, ge=1, le=65535)
    host: str = "127.0.0.1"

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/") or v.startswith("/v1/chat"):
            raise ValueError("must be an absolute path such as /metrics (not under /v1/chat)")
        return v


class TelemetrySettings(BaseModel):
    """``telemetry``: the Prometheus endpoint and the stream-check span budget."""

    model_config = ConfigDict(extra="forbid")
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    stream_check_spans: int = Field(
        default=32,
        ge=0,
        le=10_000,
        description="per stream, the first N window checks get policy spans (when traced)",
    )
