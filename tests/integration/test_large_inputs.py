"""Large inputs never stall the server (issue 11): while a 1 MB request is being checked, a real
uvicorn gateway (its own process, default policies) keeps answering ``/healthz`` within 50 ms at
p99, both for a body ``limits`` rejects (whose audit record must not be redacted whole) and for a
body under the limits that every pre_call policy reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Stub, base_config
from tests.servers import free_port, wait_http

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HEALTHZ_P99_MS = 50.0


@pytest.fixture()
def gateway_process(stub: Stub, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """``rollguard serve`` in its own process (one uvicorn worker), default policies."""
    cfg = tmp_path / "rollguard.yaml"
    cfg.write_text(json.dumps(base_config(stub, redis_url, gateway={"log_level": "warning"})))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLLGUARD_", "OTEL_"))}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _body(chars: int) -> bytes:
    words = "please summarise the quarterly report for the north region and list every open action "
    text = (words * (chars // len(words) + 1))[:chars]
    return json.dumps({"model": "echo", "messages": [{"role": "user", "content": text}]}).encode()


def _healthz_while(url: str, body: bytes, rounds: int, probes: int = 100) -> tuple[list[float], list[int]]:
    """Send ``body`` one request after the other (in a thread) until ``/healthz``, polled
    meanwhile, has answered ``probes`` times, at least once and at most ``rounds`` times; the
    /healthz latencies (ms) measured while a large request was in flight, and the large requests'
    status codes."""
    statuses: list[int] = []
    in_flight = threading.Event()
    done = threading.Event()
    enough = threading.Event()

    def send() -> None:
        with httpx.Client(timeout=120) as big:
            for _ in range(rounds):
                if enough.is_set():
                    break
                in_flight.set()
                r = big.post(
                    f"{url}/v1/chat/completions", content=body, headers={"content-type": "application/json"}
                )
                statuses.append(r.status_code)
        done.set()

    sender = threading.Thread(target=send, daemon=True)
    latencies: list[float] = []
    with httpx.Client(timeout=30) as probe:
        probe.get(f"{url}/healthz")
        sender.start()
        in_flight.wait(10)
        deadline = time.monotonic() + 90
        while not done.is_set() and time.monotonic() < deadline:
            t0 = time.perf_counter()
            assert probe.get(f"{url}/healthz").status_code == 200
            latencies.append((time.perf_counter() - t0) * 1000)
            if len(latencies) >= probes:
                enough.set()
            time.sleep(0.002)
    sender.join(5)
    return latencies, statuses


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@pytest.mark.parametrize(
    ("chars", "expected"),
    [(1_000_000, 400), (390_000, None)],
    ids=["1MB-rejected-by-limits", "390k-checked-by-every-policy"],
)
def test_healthz_stays_fast_while_a_large_request_is_checked(
    gateway_process: str, chars: int, expected: int | None
) -> None:
    latencies, statuses = _healthz_while(gateway_process, _body(chars), rounds=60)
    assert statuses
    if expected is not None:
        assert set(statuses) == {expected}
    else:
        # Answered (allowed, blocked, or 503 when a policy ran out of CPU budget): never a
        # 500 and never a stall.
        assert set(statuses) <= {200, 400, 503}, statuses
    assert latencies, "the large requests finished before /healthz was probed"
    assert _p99(latencies) < HEALTHZ_P99_MS, (
        f"/healthz p99 {_p99(latencies):.1f} ms over {len(latencies)} probes"
    )
    assert len(latencies) >= 50, f"only {len(latencies)} /healthz answers while the large requests ran"
