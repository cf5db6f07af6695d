"""Prometheus metrics (issue 12): a real Prometheus server (Debian's ``prometheus``, started here on
loopback with its own config and data directory) scrapes a real gateway's ``/metrics`` with an API
key, and its HTTP query API returns the OpenTelemetry GenAI metrics (token usage, operation
duration, time to first token), the policy decision counts and the gateway overhead, with the
variant label. The exposition text also parses with ``prometheus_client``'s parser, and its label
values stay within the configured aliases and variants.

Skips only when the ``prometheus`` binary is missing and ``.ci/prometheus.sh`` cannot install it
(no root or no apt repository)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.genai_metrics import DURATION_BUCKETS_S, TOKEN_BUCKETS, TTFT_BUCKETS_S
from tests.integration.conftest import GatewayFactory, Stub
from tests.servers import free_port, wait_http

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-rg-metrics-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
PLANTED = "carol.metrics@example.com"


def _prometheus_binary() -> str:
    found = os.environ.get("ROLLGUARD_PROMETHEUS") or shutil.which("prometheus")
    if found:
        return found
    try:
        out = subprocess.run(
            ["bash", str(REPO / ".ci" / "prometheus.sh")],
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"Debian's prometheus is not installed and .ci/prometheus.sh could not install it: {exc}")
    return out.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def _prometheus(binary: str, workdir: Path, target: str, metrics_path: str) -> Iterator[str]:
    """A Prometheus server on 127.0.0.1:<free port> scraping ``target`` every second; its URL."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "rollguard",
                "metrics_path": metrics_path,
                "authorization": {"type": "Bearer", "credentials": KEY},
                "static_configs": [{"targets": [target]}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/-/ready", timeout=60)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _until(prom: str, expr: str, want: float, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The result of ``expr`` once its first value reaches ``want`` (the scrapes catch up)."""
    deadline = time.monotonic() + timeout
    while True:
        result = _query(prom, expr)
        if result and float(result[0]["value"][1]) >= want:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{expr} stayed at {result} (wanted {want})")
        time.sleep(0.5)


def _config(stub: Stub) -> dict[str, Any]:
    return {
        "gateway": {"api_keys": [{"key": KEY, "tenant": "acme"}]},
        "telemetry": {"prometheus": {"enabled": True, "path": "/metrics"}},
        "flags": {"rollouts": {"assistant": {"flag": "assistant-rollout", "variants": {"control": "echo"}}}},
    }


def _traffic(url: str) -> int:
    """Completions and streams on a plain alias and a rolled-out one, and one unknown model (a
    planted address as its name); the number of requests sent."""
    with httpx.Client(base_url=url, timeout=30, headers=AUTH) as c:
        sent = 0
        for model, stream in (("echo", False), ("echo", True), ("assistant", False), ("assistant", True)):
            body = {
                "model": model,
                "stream": stream,
                "messages": [{"role": "user", "content": "hello there"}],
            }
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            _ = r.text
            sent += 1
        r = c.post(
            "/v1/chat/completions", json={"model": PLANTED, "messages": [{"role": "user", "content": "x"}]}
        )
        assert r.status_code == 404
        return sent + 1


def test_a_real_prometheus_scrapes_the_genai_metrics(
    gateway: GatewayFactory, stub: Stub, tmp_path: Path
) -> None:
    binary = _prometheus_binary()
    with gateway(**_config(stub)) as url:
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 401  # behind the API keys
        sent = _traffic(url)
        target = url.removeprefix("http://")
        with _prometheus(binary, tmp_path, target, "/metrics") as prom:
            _until(prom, 'up{job="rollguard"}', 1)
            _until(prom, "sum(gen_ai_client_operation_duration_seconds_count)", sent)
            tokens = _until(prom, 'sum(gen_ai_client_token_usage_count{gen_ai_token_type="output"})', 4)
            assert float(tokens[0]["value"][1]) == 4  # one per answered request
            by_type = {
                r["metric"]["gen_ai_token_type"]
                for r in _query(prom, "sum by (gen_ai_token_type) (gen_ai_client_token_usage_sum)")
            }
            assert by_type == {"input", "output"}
            ttft = _query(prom, "sum by (variant) (gen_ai_server_time_to_first_token_seconds_count)")
            assert {r["metric"]["variant"]: float(r["value"][1]) for r in ttft} == {"none": 1, "control": 1}
            for metric, bounds in (
                ("gen_ai_client_token_usage_bucket", TOKEN_BUCKETS),
                ("gen_ai_client_operation_duration_seconds_bucket", DURATION_BUCKETS_S),
                ("gen_ai_server_time_to_first_token_seconds_bucket", TTFT_BUCKETS_S),
            ):  # the GenAI conventions' boundaries
                les = {float(r["metric"]["le"]) for r in _query(prom, f"count by (le) ({metric})")}
                assert les == {*map(float, bounds), float("inf")}, metric
            decisions = _query(
                prom, "sum by (policy, action, stage, variant) (rollguard_policy_decisions_total)"
            )
            assert {r["metric"]["stage"] for r in decisions} >= {"pre_call", "post_call"}
            assert {r["metric"]["variant"] for r in decisions} == {"none", "control"}
            overhead = _until(prom, "sum(rollguard_gateway_overhead_seconds_count)", 4)
            assert float(overhead[0]["value"][1]) >= 4
            models = _query(prom, "sum by (model) (rollguard_requests_total)")
            assert {r["metric"]["model"] for r in models} == {"echo", "assistant", "unknown"}
        text = httpx.get(f"{url}/metrics", headers=AUTH, timeout=5).text
    _check_exposition(text)


def _check_exposition(text: str) -> None:
    """The exposition parses; its GenAI families are there; every label value is bounded."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "gen_ai_client_token_usage",
        "gen_ai_client_operation_duration_seconds",
        "gen_ai_server_time_to_first_token_seconds",
        "rollguard_gateway_overhead_seconds",
    ):
        assert families[name].type == "histogram", name
    assert families["rollguard_requests"].type == "counter"
    assert PLANTED not in text and "carol.metrics" not in text
    for family in families.values():
        for sample in family.samples:
            labels = sample.labels
            assert labels.get("variant", "none") in {"none", "control", "canary", "other"}
            assert labels.get("model", "echo") in {"echo", "assistant", "unknown"}
            assert labels.get("gen_ai_request_model", "echo") in {"echo", "assistant", "unknown"}


def test_metrics_on_their_own_port(gateway: GatewayFactory, stub: Stub) -> None:
    """``telemetry.prometheus.port``: served by prometheus_client on that port, not on the app."""
    port = free_port()
    with gateway(telemetry={"prometheus": {"enabled": True, "port": port}}) as url:
        r = httpx.post(
            f"{url}/v1/chat/completions",
            timeout=30,
            json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 200
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 404
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        names = {f.name for f in text_string_to_metric_families(text)}
        assert "gen_ai_client_operation_duration_seconds" in names
    with pytest.raises(httpx.HTTPError):  # stopped with the gateway
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
