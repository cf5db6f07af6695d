"""``rollguard serve --workers 2`` with ``OTEL_METRICS_EXPORTER=prometheus`` (issue 12): each
worker process is its own scrape target on ``OTEL_EXPORTER_PROMETHEUS_PORT`` and the next port,
and every request is counted exactly once across them."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import clean_env, serve_workers, wait_http

pytestmark = pytest.mark.integration


def _two_free_ports() -> int:
    """A port ``p`` with ``p`` and ``p + 1`` free on 127.0.0.1 (at the time of asking)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            p = int(a.getsockname()[1])
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", p + 1))
                except OSError:
                    continue
                return p
    pytest.skip("no two adjacent free ports")


def _requests_total(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == "rollguard_requests"
        for s in f.samples
        if s.name == "rollguard_requests_total"
    )


def test_each_worker_is_a_scrape_target_and_counts_once(tmp_path: Path) -> None:
    gw, prom = _two_free_ports(), _two_free_ports()
    env = clean_env(
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(prom),
    )
    with serve_workers(tmp_path, env=env, port=gw) as run:
        for port in (prom, prom + 1):
            wait_http(f"http://127.0.0.1:{port}/metrics", timeout=120)
        sent = 12
        with httpx.Client(timeout=60) as c:
            for i in range(sent):
                body = {"model": "demo", "messages": [{"role": "user", "content": f"question {i}"}]}
                assert c.post(f"http://127.0.0.1:{gw}/v1/chat/completions", json=body).status_code == 200
        deadline = time.monotonic() + 10
        total = 0.0
        while time.monotonic() < deadline:
            total = _requests_total(prom) + _requests_total(prom + 1)
            if total >= sent:
                break
            time.sleep(0.2)
        assert total == sent
    assert "Traceback" not in run.output, run.output[-3000:]
