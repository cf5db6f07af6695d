"""The store faults of the chaos trial (issue 10), against real servers: ``rollguard serve`` as a
child process (SIGKILL-able), a Valkey with an fsync-always append-only file that is killed,
restarted and emptied, the demo upstream on a socket and the detector worker as a process.

Must hold (issue 10): 0 records lost across a full buffer, a gateway SIGKILL while the store is
down, a store restart and a store emptied; every 200 has its record; while the store is down the
gateway serves and ``/readyz`` says ``ready-degraded``; ``serve`` starts with the store down.
Each test prints its figures (``-s`` shows them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.chaos.faults import (
    REPO,
    GatewayProcess,
    Outcome,
    gateway_config,
    load,
    missing,
    stream_ids,
    valkey,
    wait_for,
)
from tests.integration.conftest import Stub, stub
from tests.servers import free_port

__all__ = ["stub"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture()
def gateways() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for gw in started:
        gw.stop()


def test_gateway_sigkilled_while_the_store_is_down_loses_no_record(
    stub: Stub, tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    """Fault 1b (500 of 500 records were lost) and fault 2 (``serve`` exited 3, ``/readyz`` said
    503 while every request was served)."""
    port = free_port()  # no store is listening yet
    url = f"redis://127.0.0.1:{port}/0"
    gw = GatewayProcess(tmp_path, gateway_config(stub.base_url, url, tmp_path / "var"))
    gateways.append(gw)
    gw.start()  # with the store down: degraded, spooling
    code, ready = gw.ready()
    assert code == 200 and ready["status"] == "ready-degraded", ready
    assert ready["dependencies"]["store"] == "down" and ready["spool"]["spooling"] is True
    first = load(gw.url, 500)
    assert first.statuses == [200] * 500
    code, ready = gw.ready()
    assert code == 200 and ready["spool"]["records"] == 500, ready
    gw.kill()
    assert list((tmp_path / "var" / "spill").glob("spool-*.open"))  # left by the killed process
    gw.start()  # again with the store down: the dead process's spool file is sealed, kept
    second = load(gw.url, 50)
    assert second.statuses == [200] * 50
    server = valkey(tmp_path / "valkey", port)
    try:
        gw.wait_ready("ready", timeout=30)
        ids = first.ok_ids + second.ok_ids
        lost = missing(url, ids)
        print(f"\n[sigkill while spooling] 200s={len(ids)} lost={len(lost)} 5xx={first.fives + second.fives}")
        assert lost == []
        assert len(set(stream_ids(url))) == 550
        assert list((tmp_path / "var" / "spill").iterdir()) == []
    finally:
        gw.stop()
        server.stop()


def test_store_killed_and_restarted_under_load_loses_no_record(
    stub: Stub, tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    server = valkey(tmp_path / "valkey")
    port = server.port
    url = f"redis://127.0.0.1:{port}/0"
    gw = GatewayProcess(tmp_path, gateway_config(stub.base_url, url, tmp_path / "var"))
    gateways.append(gw)
    gw.start()
    gw.wait_ready("ready")
    result: list[Outcome] = []
    runner = threading.Thread(target=lambda: result.append(load(gw.url, 600, concurrency=16)))
    runner.start()
    time.sleep(1.0)
    server.terminate()  # SIGKILL of the store under load
    time.sleep(0.5)
    code, during = gw.ready()
    time.sleep(1.0)
    server = valkey(tmp_path / "valkey", port)  # the same files: the AOF is replayed
    try:
        runner.join(timeout=240)
        (out,) = result
        gw.wait_ready("ready", timeout=30)
        lost = missing(url, out.ok_ids)
        print(
            f"\n[store killed+restarted] requests={len(out.statuses)} 200s={len(out.ok_ids)} "
            f"5xx={out.fives} lost={len(lost)} readiness during outage={code} {during['status']}"
        )
        assert code == 200 and during["status"] == "ready-degraded", during
        assert out.fives == 0 and len(out.ok_ids) == 600
        assert lost == []
    finally:
        gw.stop()
        server.stop()


def _worker(url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "gateway.cli", "worker", "--redis-url", url, "--consumer", "chaos-w"]
    cmd += ["--claim-idle-ms", "300", "--idle-exit-s", "6"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_store_emptied_loses_no_later_record_and_the_worker_resumes(
    stub: Stub, tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    """Fault 2 (worker): after FLUSHALL the worker answered NOGROUP every 5 s forever (0 of 200
    processed); it now recreates its group and resumes."""
    server = valkey(tmp_path / "valkey")
    url = f"redis://127.0.0.1:{server.port}/0"
    gw = GatewayProcess(tmp_path, gateway_config(stub.base_url, url, tmp_path / "var"))
    gateways.append(gw)
    gw.start()
    worker = _worker(url)  # after the gateway's start: its idle exit counts from now
    try:
        before = load(gw.url, 100)
        assert before.statuses == [200] * 100
        client = redis.Redis.from_url(url)

        def consumed() -> bool:
            groups = (
                client.xinfo_groups("rollguard:interactions")
                if client.exists("rollguard:interactions")
                else []
            )
            return any(g["name"] == b"detectors" and g["lag"] == 0 and g["pending"] == 0 for g in groups)

        wait_for(consumed, 60, "the worker to consume the first 100 records")
        client.flushall()
        time.sleep(0.5)
        after = load(gw.url, 200)
        lost = missing(url, after.ok_ids)
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-3000:]
        stats = json.loads(out.strip().splitlines()[-1])
        print(
            f"\n[store emptied] 200s after FLUSHALL={len(after.ok_ids)} lost={len(lost)} 5xx={after.fives} "
            f"worker processed={stats['processed']} groups recreated={stats.get('groups_recreated')}"
        )
        assert after.statuses == [200] * 200 and lost == []
        assert stats["processed"] >= 300 and stats["groups_recreated"] >= 1
        client.close()
    finally:
        if worker.poll() is None:
            worker.kill()
        gw.stop()
        server.stop()


def test_a_full_spool_refuses_with_503_and_loses_nothing_accepted(
    stub: Stub, tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    """Fault 1a: with room for 200 records and the store down, 270 requests once got 200 and 70
    records were dropped. Admission now reserves the record's place: 200 get 200, 70 get 503 with
    ``Retry-After``, and all 200 records reach the store when it returns."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    cfg = gateway_config(stub.base_url, url, tmp_path / "var", max_spool_records=200, max_buffer=200)
    gw = GatewayProcess(tmp_path, cfg)
    gateways.append(gw)
    gw.start()
    out = load(gw.url, 270, concurrency=64)
    code, full = gw.ready()
    server = valkey(tmp_path / "valkey", port)
    try:
        gw.wait_ready("ready", timeout=30)
        lost = missing(url, out.ok_ids)
        written = len(set(stream_ids(url)))
        again = load(gw.url, 20)
        print(
            f"\n[spool full] 200s={out.count(200)} 503s={out.count(503)} "
            f"lost={len(lost)} readiness when full={code} {full['status']}"
        )
        assert out.count(200) == 200 and out.count(503) == 70
        assert {ra for s, ra in zip(out.statuses, out.retry_after, strict=True) if s == 503} == {"1"}
        assert code == 503 and full["status"] == "not_ready" and full["spool"]["room"] <= 0
        assert lost == [] and written == 200
        assert again.statuses == [200] * 20  # room again once written back
    finally:
        gw.stop()
        server.stop()
