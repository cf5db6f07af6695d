"""Fixtures for end-to-end tests: a real demo upstream (aiohttp on a socket), the real gateway app
under uvicorn on a socket, the real Redis-compatible store, and in-memory OpenTelemetry exporters
installed once for the process (the SDK allows one global provider)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import create_app
from gateway.demo.upstream import start_stub
from rollguard.settings import RollguardSettings
from tests.servers import ThreadedLoop, serve_app

SPANS = InMemorySpanExporter()
METRICS = InMemoryMetricReader()


def _install_otel() -> None:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(SPANS))
        trace.set_tracer_provider(provider)
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        metrics.set_meter_provider(MeterProvider(metric_readers=[METRICS]))


_install_otel()


class Stub:
    """The demo upstream on a real socket, with its test endpoints."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url  # http://127.0.0.1:PORT/v1
        self.root = base_url.rsplit("/v1", 1)[0]

    def reset(self) -> None:
        httpx.post(f"{self.root}/stub/reset").raise_for_status()

    def calls(self) -> int:
        return int(httpx.get(f"{self.root}/stub/calls").json()["total"])

    def requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.root}/stub/requests").json())

    def script(self, model: str, script: dict[str, Any], times: int | None = 1) -> None:
        httpx.post(
            f"{self.root}/stub/script", json={"model": model, "script": script, "times": times}
        ).raise_for_status()


@pytest.fixture(scope="session")
def stub() -> Iterator[Stub]:
    loop = ThreadedLoop()
    runner, base_url = loop.run(start_stub("127.0.0.1", 0))
    try:
        yield Stub(base_url)
    finally:
        loop.run(runner.cleanup())
        loop.close()


def base_config(stub: Stub, redis_url: str, **extra: Any) -> dict[str, Any]:
    """A config whose models point at the stub: ``echo`` (echoes the last user message),
    ``demo`` (recorded replies), ``scripted`` (scripts via /stub/script), ``down`` (refused)."""
    cfg: dict[str, Any] = {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {
                    "model": f"openai/{name}",
                    "api_base": stub.base_url,
                    "api_key": "sk-test",
                },
            }
            for name in ("echo", "demo", "scripted", "slow")
        ]
        + [
            {
                "model_name": "down",
                "litellm_params": {
                    "model": "openai/down",
                    "api_base": "http://127.0.0.1:9/v1",
                    "api_key": "sk-test",
                },
            }
        ],
        "router_settings": {"num_retries": 0, "timeout": 5},
        "store": {"redis_url": redis_url},
    }
    cfg.update(extra)
    return cfg


GatewayFactory = Callable[..., contextlib.AbstractContextManager[str]]


@pytest.fixture()
def gateway(stub: Stub, redis_url: str) -> Iterator[GatewayFactory]:
    """``with gateway(**config_overrides) as url:`` runs a real gateway; yields its base URL."""

    @contextlib.contextmanager
    def run(**overrides: Any) -> Iterator[str]:
        settings = RollguardSettings(**base_config(stub, redis_url, **overrides))
        with serve_app(create_app(settings)) as srv:
            yield srv.url

    stub.reset()
    SPANS.clear()
    yield run


@pytest.fixture(scope="module")
def shared_gateway(stub: Stub, redis_server_url: str) -> Iterator[str]:
    """One gateway with the default policies for the module (startup loads the models once)."""
    settings = RollguardSettings(**base_config(stub, redis_server_url))
    with serve_app(create_app(settings)) as srv:
        yield srv.url
