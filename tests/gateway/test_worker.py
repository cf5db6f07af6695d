"""The detector worker against a real Redis (the ``redis_url`` fixture) with real worker processes:
reclaim of a crashed consumer's entries, exactly-once effect on the detector state, deleted
entries, duplicates and anomaly bundles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from gateway.store.keys import (
    ANOMALIES_STREAM,
    ANOMALY_EVENTS_STREAM,
    SEEN_KEY,
    SIGNALS_STREAM,
    STATE_KEY,
    VARIANT_SUMS_KEY,
)
from gateway.tools import shipped
from rollguard.types import Interaction

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STREAM = "rollguard:interactions"
GROUP = "detectors"


def _records(
    n: int, side: str = "chosen", variant: str = "control", offset: int = 0
) -> list[dict[str, object]]:
    pairs = shipped.hh_pairs()[offset : offset + n]
    out = []
    for i, p in enumerate(pairs):
        it = Interaction(
            id=f"ix-{side}-{offset + i:05d}",
            created_ms=1_700_000_000_000 + i,
            tenant="acme",
            model="demo",
            messages=[{"role": "user", "content": p["prompt"]}],
            completion=p[side],
            metadata={"variant": variant},
        )
        out.append(it.to_record())
    return out


def _append(r: Any, records: list[dict[str, object]]) -> list[str]:
    ids = []
    for rec in records:
        ids.append(r.xadd(STREAM, {"record": orjson.dumps(rec), "id": str(rec["id"])}).decode())
    return ids


def _start_worker(url: str, name: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "worker",
            "--redis-url",
            url,
            "--consumer",
            name,
            "--claim-idle-ms",
            "300",
            "--idle-exit-s",
            "4",
            *extra,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(p: subprocess.Popen[str]) -> dict[str, int]:
    out, err = p.communicate(timeout=240)
    assert p.returncode == 0, err[-3000:]
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_must_hold_2_crashed_worker_entries_processed_exactly_once(redis_url: str) -> None:
    r: Any = redis.Redis.from_url(redis_url)
    _append(r, _records(300))
    r.xgroup_create(STREAM, GROUP, id="0")
    # The crashed worker: it claimed all 300 entries (they sit in its pending list) and died
    # before acknowledging any of them.
    claimed = r.xreadgroup(GROUP, "worker-crashed", {STREAM: ">"}, count=1000)
    assert len(claimed[0][1]) == 300
    assert r.xpending(STREAM, GROUP)["pending"] == 300
    # A duplicate delivery of 10 interactions (the store is at-least-once) arrives meanwhile.
    _append(r, _records(10))
    b = _start_worker(redis_url, "worker-b")
    c = _start_worker(redis_url, "worker-c")
    sb, sc = _finish(b), _finish(c)
    assert sb["processed"] + sc["processed"] == 300
    # With a 300 ms claim idle time one worker may also reclaim entries the other is still
    # scoring; the seen-set makes the second application a no-op (counted as a duplicate).
    assert sb["reclaimed"] + sc["reclaimed"] >= 300
    assert sb["duplicates"] + sc["duplicates"] >= 10
    assert r.xpending(STREAM, GROUP)["pending"] == 0
    assert r.zcard(SEEN_KEY) == 300
    assert r.xlen(SIGNALS_STREAM) == 300
    state = orjson.loads(r.get(STATE_KEY) or b"{}")
    assert state["n"] == 300
    assert state["monitors"]["all"]["refusal"]["ref"].__len__() == 300  # each counted once
    ids = {e[1][b"id"].decode() for e in r.xrange(SIGNALS_STREAM)}
    assert len(ids) == 300
    sums = orjson.loads(r.get(VARIANT_SUMS_KEY))  # same transaction: counted once too
    assert sum(sums["control"]["latency_ms"].values()) == 300
    assert sums["control"]["shadow_would_block"][0] == 300


def test_per_variant_latency_histogram_and_shadow_would_blocks(redis_url: str) -> None:
    r: Any = redis.Redis.from_url(redis_url)
    recs = _records(40, variant="control") + _records(40, variant="canary", offset=40)
    shadow = {"policy": "pii", "policy_type": "pii", "verdict": "block", "enforced": False}
    enforced = {**shadow, "enforced": True}
    for i, rec in enumerate(recs):
        rec["latency_ms"] = 100.0 * (1 + i % 10) * (1.5 if i >= 40 else 1.0)
        rec["decisions"] = [shadow] if i % 10 == 0 and i >= 40 else [enforced] if i % 10 == 1 else []
        if i >= 40 and i % 2 == 0:
            rec["ttft_ms"] = 50.0
    _append(r, recs)
    _finish(_start_worker(redis_url, "worker-sums"))
    sums = orjson.loads(r.get(VARIANT_SUMS_KEY))
    assert sums["control"]["shadow_would_block"] == [40, 0.0, 0.0]  # enforced blocks are not shadow
    assert sums["canary"]["shadow_would_block"] == [40, 4.0, 4.0]
    assert sum(sums["canary"]["ttft_ms"].values()) == 20 and "ttft_ms" not in sums["control"]
    from gateway.worker.variant_sums import values_of

    for variant, factor in (("control", 1.0), ("canary", 1.5)):
        got = values_of(sums[variant]["latency_ms"], None)
        want = sorted(100.0 * (1 + i % 10) * factor for i in range(40))
        assert got == pytest.approx(want, rel=0.01)


def test_deleted_pending_entries_are_counted_and_acknowledged(redis_url: str) -> None:
    r: Any = redis.Redis.from_url(redis_url)
    ids = _append(r, _records(20))
    r.xgroup_create(STREAM, GROUP, id="0")
    r.xreadgroup(GROUP, "worker-crashed", {STREAM: ">"}, count=100)
    r.xdel(STREAM, *ids[:5])
    stats = _finish(_start_worker(redis_url, "worker-d"))
    assert stats["deleted"] == 5
    assert stats["processed"] == 15
    assert r.xpending(STREAM, GROUP)["pending"] == 0


def test_bad_record_is_reported_not_dropped_silently(redis_url: str) -> None:
    r: Any = redis.Redis.from_url(redis_url)
    r.xadd(STREAM, {"record": b"{not json", "id": "ix-bad"})
    _append(r, _records(3))
    stats = _finish(_start_worker(redis_url, "worker-e"))
    assert stats["bad_records"] == 1 and stats["processed"] == 3
    errors = [e for e in r.xrange(SIGNALS_STREAM) if b"error" in e[1][b"signals"]]
    assert len(errors) == 1


def test_anomaly_bundle_for_a_regressed_canary(redis_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "rollguard.yaml"
    cfg.write_text(
        "detectors:\n  reference_size: 100\n  input_reference_size: 100\n  input_window: 50\n"
        "  floors:\n    min_sample: 40\n    comparison_alpha: 0.01\n",
        encoding="utf-8",
    )
    r: Any = redis.Redis.from_url(redis_url)
    control = _records(400, "chosen", "control")
    # the canary answers with long replies: each chosen reply padded by three other real replies
    canary = _records(400, "chosen", "canary", offset=400)
    pool = [str(x["completion"]) for x in _records(400, "chosen", "control", offset=800)]
    for i, rec in enumerate(canary):
        rec["completion"] = " ".join([str(rec["completion"]), *pool[i : i + 3]])
    mixed = [rec for pair in zip(control, canary, strict=True) for rec in pair]
    _append(r, mixed)
    stats = _finish(_start_worker(redis_url, "worker-f", "--config", str(cfg)))
    assert stats["processed"] == 800
    bundles = [orjson.loads(e[1][b"bundle"]) for e in r.xrange(ANOMALIES_STREAM)]
    length = [
        b for b in bundles if b["detector"] == "reply_log_chars" and b["group"].get("control") == "control"
    ]
    assert length, [b["detector"] for b in bundles]
    b = length[0]
    for key in (
        "statistic",
        "threshold",
        "effect",
        "p_value",
        "window_start_id",
        "window_end_id",
        "exemplars_current",
        "exemplars_reference",
        "severity",
        "group",
    ):
        assert key in b
    assert b["effect"] >= 1.15
    assert len(b["exemplars_current"]) == 10 and len(b["exemplars_reference"]) == 10
    # The bundle carries its exemplar records (one worker scored them all, so each is cached), in
    # the order of exemplar_ids, bounded in count, text length and bytes: review needs no scan.
    records = b["exemplar_records"]
    assert 1 <= len(records) <= 20
    assert [x["id"] for x in records] == b["exemplar_ids"][: len(records)]
    assert all(x["completion"] and len(x["completion"]) <= 2000 for x in records)
    assert all(len(m["content"]) <= 2000 for x in records for m in x["messages"])
    assert len(orjson.dumps(records)) <= 64 * 1024
    assert all("exemplar_records" in x for x in bundles)


def test_worker_killed_mid_stream_then_second_worker_counts_each_once(redis_url: str) -> None:
    r: Any = redis.Redis.from_url(redis_url)
    _append(r, _records(600))
    a = _start_worker(redis_url, "worker-killed", "--batch", "50")
    # kill it while it works: as soon as it has acknowledged something, but not everything
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        groups = r.xinfo_groups(STREAM) if r.exists(STREAM) else []
        acked = r.zcard(SEEN_KEY)
        if groups and 0 < acked < 600:
            break
        time.sleep(0.05)
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=30)
    left = r.xpending(STREAM, GROUP)["pending"]
    b = _finish(_start_worker(redis_url, "worker-after"))
    assert b["reclaimed"] == left
    assert r.xpending(STREAM, GROUP)["pending"] == 0
    assert r.zcard(SEEN_KEY) == 600
    assert r.xlen(SIGNALS_STREAM) == 600
    assert orjson.loads(r.get(STATE_KEY))["n"] == 600


def test_malformed_records_are_counted_acknowledged_and_never_stop_the_worker(redis_url: str) -> None:
    """Regression: a record whose ``messages`` was a string crashed every worker on every restart."""
    r: Any = redis.Redis.from_url(redis_url)
    good = _records(5)
    _append(r, good[:2])
    poison = [
        {"id": "bad-messages-str", "messages": "not a list", "completion": "x"},
        {"id": "bad-message-items", "messages": ["hi", 3], "completion": "x"},
        {"id": "bad-completion", "messages": [{"role": "user", "content": "hi"}], "completion": 42},
        {"id": "bad-metadata", "messages": [], "completion": "ok", "metadata": ["variant"]},
        {
            "id": "bad-content",
            "messages": [{"role": "user", "content": {"nested": True}}],
            "completion": "ok",
        },
    ]
    for rec in poison:
        r.xadd(STREAM, {"record": orjson.dumps(rec), "id": rec["id"]})
    r.xadd(STREAM, {"record": b"{not json", "id": "bad-json"})
    _append(r, good[2:])
    stats = _finish(_start_worker(redis_url, "worker-poison"))
    assert stats["processed"] + stats["bad_records"] == 5 + len(poison) + 1
    assert stats["processed"] >= 5
    assert stats["bad_records"] >= 5
    assert r.xpending(STREAM, GROUP)["pending"] == 0
    signals = {e[1][b"id"].decode(): orjson.loads(e[1][b"signals"]) for e in r.xrange(SIGNALS_STREAM)}
    assert all("refusal" in signals[str(g["id"])] for g in good)
    assert "error" in signals["bad-messages-str"] and "error" in signals["bad-json"]


def _long(records: list[dict[str, object]], pool_offset: int) -> list[dict[str, object]]:
    """The records with each reply padded by three other real replies (about 4x longer)."""
    pool = [str(x["completion"]) for x in _records(400, "chosen", "control", offset=pool_offset)]
    for i, rec in enumerate(records):
        rec["completion"] = " ".join([str(rec["completion"]), *pool[i % 397 : i % 397 + 3]])
    return records


def _events(r: Any) -> list[dict[str, Any]]:
    return [orjson.loads(e[1][b"data"]) for e in r.xrange(ANOMALY_EVENTS_STREAM)]


def test_one_shift_is_one_anomaly_across_worker_restarts_then_resolves_and_reopens(
    redis_url: str, tmp_path: Path
) -> None:
    """A length shift keeps firing in every group (all, variant, model, tenant) and in every batch;
    the anomalies stream gets one entry for it, the lifecycle state survives worker restarts, and
    after ``resolve_after`` quiet requests it resolves; the same shift later is a new anomaly."""
    cfg = tmp_path / "rollguard.yaml"
    cfg.write_text(
        "detectors:\n  reference_size: 100\n  input_reference_size: 100\n  input_window: 50\n"
        "  input_group_by: []\n  floors:\n    min_sample: 40\n  alerts:\n    resolve_after: 250\n",
        encoding="utf-8",
    )
    r: Any = redis.Redis.from_url(redis_url)

    def length_anomalies() -> list[dict[str, Any]]:
        bundles = [orjson.loads(e[1][b"bundle"]) for e in r.xrange(ANOMALIES_STREAM)]
        return [b for b in bundles if b["detector"] == "reply_log_chars"]

    # run 1: 200 ordinary replies (the reference), then 300 long ones
    _append(r, _records(200) + _long(_records(300, offset=200), 1500))
    s1 = _finish(_start_worker(redis_url, "worker-l1", "--config", str(cfg)))
    assert s1["processed"] == 500
    (first,) = length_anomalies()
    assert first["id"] and first["status"] == "open" and first["groups"]
    assert set(first["group_keys"]) <= {"all", "variant=control", "model=demo", "tenant=acme"}
    assert first["exemplar_ids"] == first["exemplars_current"] + first["exemplars_reference"]
    state = orjson.loads(r.get(STATE_KEY))
    (incident,) = [i for i in state["alerts"]["open"].values() if i["detector"] == "reply_log_chars"]
    count_1 = sum(m["count"] for m in incident["members"].values())

    # run 2, a new process on the stored state: 300 more long replies keep firing, no new anomaly
    _append(r, _long(_records(300, offset=500), 1500))
    s2 = _finish(_start_worker(redis_url, "worker-l2", "--config", str(cfg)))
    assert s2["processed"] == 300
    assert len(length_anomalies()) == 1
    state = orjson.loads(r.get(STATE_KEY))
    incident = state["alerts"]["open"][incident["family"]]
    assert sum(m["count"] for m in incident["members"].values()) > count_1
    assert all(e["event"] != "resolve" for e in _events(r) if e["id"] == first["id"]), (
        "resolved while the shift went on"
    )

    # run 3: 400 ordinary replies, then the shift comes back
    _append(r, _records(400, offset=800) + _long(_records(300, offset=1200), 1800))
    s3 = _finish(_start_worker(redis_url, "worker-l3", "--config", str(cfg)))
    assert s3["processed"] == 700 and s3["resolved"] >= 1
    resolved = [e for e in _events(r) if e["id"] == first["id"] and e["event"] == "resolve"]
    assert len(resolved) == 1 and resolved[0]["status"] == "resolved"
    anomalies = length_anomalies()
    assert len(anomalies) == 2 and anomalies[1]["id"] != first["id"]
    # every anomaly written has its open event
    opened = {e["id"] for e in _events(r) if e["event"] == "open"}
    assert {b["id"] for b in anomalies} <= opened
