"""CPU per request of the gateway's telemetry (issue 12), in-process: what one finished chat
completion costs in metrics (``GatewayMetrics.record_finished`` + ``record_decisions`` for the
three default policies at two stages) and in W3C trace-context propagation (``extract`` of the
incoming headers, ``inject`` into the upstream request's), against the instruments the gateway
recorded before (requests counter, ms duration histogram, decisions counter, fresh attribute dicts).

Meter providers: ``noop`` (no exporter configured: the default) and ``prometheus`` (an SDK
provider with the Prometheus reader, as with ``telemetry.prometheus.enabled``). CPU time of this
process (``time.process_time``) over N requests after a warm-up; microseconds per request.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python bench/telemetry_cpu.py 20000
"""

import sys
import time
from collections.abc import Callable

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from starlette.datastructures import Headers

from gateway.genai_metrics import GatewayMetrics
from rollguard.types import Decision, Interaction, Stage, Verdict

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000


def interaction(i: int) -> Interaction:
    it = Interaction(id=f"rg-{i}", created_ms=0, tenant="default", model="echo", stream=False, messages=[])
    it.latency_ms, it.upstream_ms = 3.2, 2.5
    it.usage = {"prompt_tokens": 240, "completion_tokens": 60, "total_tokens": 300}
    return it


DECISIONS = [
    Decision(policy=p, policy_type=p, stage=s, verdict=Verdict.ALLOW, score=0.0, reason="")
    for s in (Stage.PRE_CALL, Stage.POST_CALL)
    for p in ("pii", "secrets", "prompt_injection")
]


def per_request_us(fn: Callable[[int], None]) -> float:
    for i in range(2000):
        fn(i)
    t0 = time.process_time()
    for i in range(N):
        fn(i)
    return (time.process_time() - t0) / N * 1e6


def new_metrics(meter: metrics.Meter) -> Callable[[int], None]:
    m = GatewayMetrics(meter, ["canary"])
    items = [interaction(i) for i in range(64)]

    def run(i: int) -> None:
        it = items[i % 64]
        m.record_decisions(DECISIONS, m.variant(it))
        m.record_finished(it, "ok", "echo")

    return run


def old_metrics(meter: metrics.Meter) -> Callable[[int], None]:
    requests = meter.create_counter("old.requests")
    decisions = meter.create_counter("old.decisions")
    duration = meter.create_histogram("old.duration", unit="ms")
    items = [interaction(i) for i in range(64)]

    def run(i: int) -> None:
        it = items[i % 64]
        for d in DECISIONS:
            decisions.add(
                1,
                {
                    "policy": d.policy,
                    "verdict": d.verdict.value,
                    "stage": d.stage.value,
                    "enforced": d.enforced,
                },
            )
        requests.add(1, {"outcome": "ok", "model": "echo", "stream": it.stream})
        duration.record(it.latency_ms, {"model": "echo"})

    return run


def propagation(with_parent: bool) -> Callable[[int], None]:
    raw = [
        (b"host", b"127.0.0.1:8080"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer k"),
    ]
    if with_parent:
        raw.append((b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
    headers = Headers(raw=raw)

    def run(i: int) -> None:
        extract(headers)
        out = {"Content-Type": "application/json"}
        inject(out)

    return run


def current_span() -> Callable[[int], None]:
    """The router's ``trace.use_span`` around the transport call (no tracer provider: a no-op span)."""
    span = trace.get_tracer("bench").start_span("x")

    def run(i: int) -> None:
        with trace.use_span(span, record_exception=False, set_status_on_exception=False):
            pass

    return run


def main() -> None:
    noop = metrics.NoOpMeterProvider().get_meter("bench")
    registry = CollectorRegistry()
    sdk = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)]).get_meter("bench")
    rows = [
        ("metrics before (noop provider)", old_metrics(noop)),
        ("metrics now (noop provider)", new_metrics(noop)),
        ("metrics before (SDK + Prometheus reader)", old_metrics(sdk)),
        ("metrics now (SDK + Prometheus reader)", new_metrics(sdk)),
        ("trace context extract+inject, no traceparent", propagation(False)),
        ("trace context extract+inject, traceparent", propagation(True)),
        ("use_span around the upstream call", current_span()),
    ]
    for name, fn in rows:
        print(f"{name:48s} {per_request_us(fn):7.1f} us/request")
    t0 = time.process_time()
    text = generate_latest(registry)
    print(
        f"{'one scrape (generate_latest)':48s} {(time.process_time() - t0) * 1e3:7.1f} ms, {len(text)} bytes"
    )


if __name__ == "__main__":
    main()
