"""Unit tests of gateway.flags without an Unleash server: the bootstrap file, the request context,
stickiness, the kill switch, reload, and polling against a real local HTTP server that stands in for
``/api/client/features`` (the integration tests in tests/integration/test_unleash_flags.py use a real
Unleash)."""

from __future__ import annotations

import http.server
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.flags import DEFAULT_BOOTSTRAP_FILE, FlagContext, Flags
from rollguard.errors import ConfigError
from rollguard.settings import FlagSettings

# --------------------------------------------------------------------------------- helpers


def rollout(
    name: str,
    percent: int,
    *,
    stickiness: str = "default",
    enabled: bool = True,
    variants: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A client-features entry: one flexibleRollout strategy (the shape Unleash 7 serves)."""
    return {
        "name": name,
        "type": "release",
        "enabled": enabled,
        "strategies": [
            {
                "name": "flexibleRollout",
                "constraints": [],
                "parameters": {"rollout": str(percent), "stickiness": stickiness, "groupId": name},
                "variants": variants or [],
            }
        ],
    }


def variant(name: str, value: str) -> dict[str, Any]:
    return {
        "name": name,
        "weight": 500,
        "weightType": "variable",
        "stickiness": "default",
        "payload": {"type": "string", "value": value},
    }


STATE: dict[str, Any] = {
    "version": 2,
    "features": [
        rollout("pii-on", 100),
        rollout("pii-off", 100, enabled=False),
        rollout("half", 50),
        rollout("half-by-user", 50, stickiness="userId"),
        rollout("model-rollout", 100, variants=[variant("control", "demo-a"), variant("canary", "demo-b")]),
        {
            "name": "tenant-acme",
            "enabled": True,
            "strategies": [
                {
                    "name": "default",
                    "constraints": [{"contextName": "tenantId", "operator": "IN", "values": ["acme"]}],
                }
            ],
        },
    ],
}


def write_state(path: Path, state: dict[str, Any]) -> Path:
    path.write_text(json.dumps(state), encoding="utf-8")
    return path


@pytest.fixture()
def flags(tmp_path: Path) -> Iterator[Flags]:
    f = Flags(FlagSettings(bootstrap_file=write_state(tmp_path / "flags.json", STATE)))
    f.start()
    yield f
    f.close()


ANON = FlagContext()


# ---------------------------------------------------------------------------- bootstrap mode


def test_bootstrap_file_decides_and_unknown_flags_default_to_on(flags: Flags) -> None:
    snap = flags.evaluate(["pii-on", "pii-off", "never-created"], FlagContext(user_id="u1"))
    assert snap.enabled == {"pii-on": True, "pii-off": False, "never-created": True}
    assert snap.variants == {} and snap.payloads == {}
    off = flags.evaluate(["never-created"], ANON, default=False)
    assert off.enabled == {"never-created": False}


def test_embedded_default_file_is_used_when_none_is_configured() -> None:
    f = Flags(FlagSettings())
    f.start()
    try:
        d = f.describe()
        assert d["mode"] == "bootstrap" and d["source"] == "bootstrap"
        assert d["bootstrap"] == str(DEFAULT_BOOTSTRAP_FILE)
        assert "rollguard.example.kill-switch" in d["flags"]
        snap = f.evaluate(["rollguard.example.kill-switch", "anything-else"], ANON)
        assert snap.enabled == {"rollguard.example.kill-switch": False, "anything-else": True}
    finally:
        f.close()


def test_tenant_is_a_custom_property_usable_in_constraints(flags: Flags) -> None:
    assert flags.evaluate(["tenant-acme"], FlagContext(tenant="acme")).enabled["tenant-acme"] is True
    assert flags.evaluate(["tenant-acme"], FlagContext(tenant="other")).enabled["tenant-acme"] is False
    assert flags.evaluate(["tenant-acme"], ANON).enabled["tenant-acme"] is False


def test_remote_address_strategy_sees_the_clients_address(tmp_path: Path) -> None:
    """Unleash's ``remoteAddress`` strategy (IP allow-list) matches on the context's
    ``remote_address``, as the chat route fills it from the client's socket address."""
    state = {
        "version": 2,
        "features": [
            {
                "name": "office-only",
                "enabled": True,
                "strategies": [{"name": "remoteAddress", "parameters": {"IPs": "10.1.2.3, 192.168.7.0/24"}}],
            }
        ],
    }
    f = Flags(FlagSettings(bootstrap_file=write_state(tmp_path / "flags.json", state)))
    f.start()
    try:
        for address, expected in (("10.1.2.3", True), ("192.168.7.42", True), ("10.1.2.4", False)):
            ctx = FlagContext.from_request(user="u1", headers={}, tenant="t", remote_address=address)
            assert f.evaluate(["office-only"], ctx).enabled["office-only"] is expected, address
        assert f.evaluate(["office-only"], FlagContext(user_id="u1")).enabled["office-only"] is False
    finally:
        f.close()


_CONNECTS: list[Any] = []
_RECORDING = threading.Event()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _RECORDING.is_set() and event in ("socket.connect", "socket.getaddrinfo"):
        _CONNECTS.append((event, args))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it records only while _RECORDING is set


def test_bootstrap_mode_opens_no_socket_and_starts_no_thread(tmp_path: Path) -> None:
    path = write_state(tmp_path / "flags.json", STATE)
    threads_before = {t.ident for t in threading.enumerate()}
    _CONNECTS.clear()
    _RECORDING.set()
    try:
        f = Flags(FlagSettings(bootstrap_file=path, refresh_interval_s=1))
        f.start()
        for _ in range(50):
            f.evaluate(["pii-on", "half"], FlagContext(user_id="u1"), variant_flags=["model-rollout"])
        assert f.reload()
        time.sleep(1.5)  # longer than refresh_interval_s: a poll or cache reload would have run
        new_threads = {t.name for t in threading.enumerate() if t.ident not in threads_before}
        f.close()
    finally:
        _RECORDING.clear()
    assert _CONNECTS == []
    assert not any("unleash" in n.lower() or "apscheduler" in n.lower() for n in new_threads), new_threads


# --------------------------------------------------------------------------------- context


def test_missing_ids_are_left_out_of_the_context() -> None:
    assert FlagContext().to_unleash() == {}
    for missing in (None, "", "   ", "None", "null", "NULL", "undefined", 3.5, True, ["u"]):
        ctx = FlagContext.from_request(user=missing, headers={"x-rollguard-session": "null"}).to_unleash()
        assert ctx == {}, missing
    direct = FlagContext(user_id="None", session_id="", tenant="", remote_address=None).to_unleash()
    assert direct == {}


def test_context_from_request_fields_and_headers() -> None:
    ctx = FlagContext.from_request(user="alice", headers={}, tenant="acme", remote_address="10.0.0.7")
    assert ctx.to_unleash() == {
        "userId": "alice",
        "remoteAddress": "10.0.0.7",
        "properties": {"tenantId": "acme"},
    }
    hdr = FlagContext.from_request(
        user="body-user", headers={"x-rollguard-user": " hdr-user ", "x-rollguard-session": "s-9"}
    )
    assert hdr.to_unleash() == {"userId": "hdr-user", "sessionId": "s-9"}
    assert FlagContext.from_request(user=42).to_unleash() == {"userId": "42"}
    assert len(FlagContext.from_request(user="x" * 1000).to_unleash()["userId"]) == 256


# ------------------------------------------------------------------------------ stickiness


def test_anonymous_traffic_spreads_across_a_50_percent_rollout(flags: Flags) -> None:
    on = sum(flags.evaluate(["half"], ANON).enabled["half"] for _ in range(1000))
    assert 400 <= on <= 600, on  # binomial(1000, 0.5): 40-60 % is more than 6 standard deviations


def test_a_user_id_gets_the_same_answer_every_time(flags: Flags) -> None:
    for uid in ("u1", "u2", "u3", "u4"):
        answers = {flags.evaluate(["half"], FlagContext(user_id=uid)).enabled["half"] for _ in range(100)}
        assert len(answers) == 1, uid
    share = sum(
        flags.evaluate(["half"], FlagContext(user_id=f"user-{i}")).enabled["half"] for i in range(1000)
    )
    assert 400 <= share <= 600, share


def test_explicit_userid_stickiness_is_off_for_anonymous_traffic(flags: Flags) -> None:
    """Documents the pitfall: ``stickiness: userId`` without a userId puts everyone in one bucket."""
    assert not any(flags.evaluate(["half-by-user"], ANON).enabled["half-by-user"] for _ in range(200))


def test_variants_follow_the_user_and_carry_their_payload(flags: Flags) -> None:
    seen: dict[str, int] = {}
    for i in range(400):
        ctx = FlagContext(user_id=f"user-{i}")
        snap = flags.evaluate([], ctx, variant_flags=["model-rollout"])
        assert snap.enabled["model-rollout"] is True
        name = snap.variants["model-rollout"]
        assert snap.payloads["model-rollout"] == {"control": "demo-a", "canary": "demo-b"}[name]
        again = flags.evaluate([], ctx, variant_flags=["model-rollout"])
        assert again.variants["model-rollout"] == name
        seen[name] = seen.get(name, 0) + 1
    assert set(seen) == {"control", "canary"}
    assert 140 <= seen["canary"] <= 260, seen


def test_unknown_variant_flag_is_on_without_a_variant(flags: Flags) -> None:
    snap = flags.evaluate([], FlagContext(user_id="u1"), variant_flags=["no-such-rollout"])
    assert snap.enabled == {"no-such-rollout": True}
    assert snap.variants == {} and snap.payloads == {}


# ----------------------------------------------------------------------- kill switch, reload


def test_kill_switch_overrides_and_revive_restores(flags: Flags) -> None:
    ctx = FlagContext(user_id="u1")
    flags.kill("pii-on")
    flags.kill("model-rollout")
    flags.kill("never-created")
    snap = flags.evaluate(["pii-on", "never-created"], ctx, variant_flags=["model-rollout"])
    assert snap.enabled == {"pii-on": False, "never-created": False, "model-rollout": False}
    assert snap.variants == {}
    assert flags.describe()["killed"] == ["model-rollout", "never-created", "pii-on"]
    for name in ("pii-on", "model-rollout", "never-created"):
        flags.revive(name)
    snap = flags.evaluate(["pii-on", "never-created"], ctx, variant_flags=["model-rollout"])
    assert snap.enabled == {"pii-on": True, "never-created": True, "model-rollout": True}
    assert snap.variants["model-rollout"] in {"control", "canary"}


def test_reload_applies_a_changed_file_and_keeps_flags_on_a_bad_one(tmp_path: Path) -> None:
    path = write_state(tmp_path / "flags.json", STATE)
    f = Flags(FlagSettings(bootstrap_file=path))
    f.start()
    try:
        assert f.evaluate(["pii-on"], ANON).enabled["pii-on"] is True
        write_state(path, {"version": 2, "features": [rollout("pii-on", 100, enabled=False)]})
        assert f.reload() is True
        assert f.evaluate(["pii-on", "pii-off"], ANON).enabled == {"pii-on": False, "pii-off": True}
        path.write_text("{not json", encoding="utf-8")
        assert f.reload() is False
        assert f.evaluate(["pii-on"], ANON).enabled["pii-on"] is False
    finally:
        f.close()


def test_sighup_reloads_the_bootstrap_file(tmp_path: Path) -> None:
    path = write_state(tmp_path / "flags.json", STATE)
    f = Flags(FlagSettings(bootstrap_file=path))
    f.start()
    previous = signal.getsignal(signal.SIGHUP)
    try:
        assert f.install_sighup_handler() is True
        write_state(path, {"version": 2, "features": [rollout("pii-on", 100, enabled=False)]})
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + 5
        while f.evaluate(["pii-on"], ANON).enabled["pii-on"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert f.evaluate(["pii-on"], ANON).enabled["pii-on"] is False
    finally:
        signal.signal(signal.SIGHUP, previous)
        f.close()


# ------------------------------------------------------------------------------ config errors


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="api_token"):
        Flags(FlagSettings(unleash_url="http://127.0.0.1:4242/api"))
    with pytest.raises(ConfigError, match="api_token"):
        Flags(FlagSettings(unleash_url="http://127.0.0.1:4242/api", api_token="os.environ/ROLLGUARD_UNSET_X"))
    with pytest.raises(ConfigError, match="http"):  # load_settings refuses it first; Flags too
        Flags(FlagSettings.model_construct(unleash_url="localhost:4242", api_token="t"))
    with pytest.raises(ConfigError, match="cannot read"):
        Flags(FlagSettings(bootstrap_file=tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="features"):
        Flags(FlagSettings(bootstrap_file=write_state(tmp_path / "x.json", {"toggles": []})))
    with pytest.raises(RuntimeError, match="start"):
        Flags(FlagSettings()).evaluate(["x"], ANON)


# ------------------------------------------------------- polling a real local HTTP server


class _FeatureServer:
    """A real HTTP server answering ``GET /api/client/features`` with a mutable document (ETag-aware),
    and ``POST /api/client/register`` with 202, standing in for Unleash."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.requests: list[tuple[str, str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(("GET", self.path, self.headers.get("Authorization")))
                body = json.dumps(outer.state).encode()
                etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                outer.requests.append(("POST", self.path, self.headers.get("Authorization")))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def feature_server() -> Iterator[_FeatureServer]:
    server = _FeatureServer({"version": 2, "features": [rollout("pii-on", 100), rollout("from-server", 100)]})
    yield server
    server.stop()


def wait_for(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def test_polls_the_server_then_keeps_last_known_good_when_it_stops(
    tmp_path: Path, feature_server: _FeatureServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = FlagSettings(
        unleash_url=feature_server.url,  # "/api" is appended
        api_token="*:development.unit-token",
        refresh_interval_s=1,
        bootstrap_file=write_state(
            tmp_path / "flags.json", {"version": 2, "features": [rollout("pii-on", 100, enabled=False)]}
        ),
    )
    f = Flags(settings)
    f.start(wait_s=5)
    try:
        d = f.describe()
        assert d["source"] == "server" and d["unleash_url"] == feature_server.url + "/api"
        assert d["last_fetch_ms"] is not None and not d["stale"]
        assert "from-server" in d["flags"]
        assert f.evaluate(["pii-on"], ANON).enabled["pii-on"] is True  # server beats bootstrap
        gets = [r for r in feature_server.requests if r[0] == "GET"]
        assert gets[0][1] == "/api/client/features" and gets[0][2] == "*:development.unit-token"
        feature_server.state = {"version": 2, "features": [rollout("pii-on", 100, enabled=False)]}
        assert wait_for(lambda: f.evaluate(["pii-on"], ANON).enabled["pii-on"] is False)
        fetched = f.describe()["last_fetch_ms"]
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            feature_server.stop()
            time.sleep(3.5)  # several failed polls
            assert f.evaluate(["pii-on"], ANON).enabled["pii-on"] is False  # last known good
        assert f.describe()["last_fetch_ms"] == fetched
        unleash_records = [r for r in caplog.records if r.name.startswith("UnleashClient")]
        assert all(r.exc_info is None for r in unleash_records)
        warnings = [r for r in unleash_records if r.levelno >= logging.WARNING]
        assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]
    finally:
        f.close()


def test_unreachable_server_serves_bootstrap_then_cached_last_known_good(
    tmp_path: Path, feature_server: _FeatureServer
) -> None:
    bootstrap = write_state(tmp_path / "flags.json", {"version": 2, "features": [rollout("from-server", 0)]})
    cache_dir = tmp_path / "flags-cache"
    settings = FlagSettings(
        unleash_url=feature_server.url,
        api_token="tok",
        refresh_interval_s=1,
        bootstrap_file=bootstrap,
        cache_dir=cache_dir,
    )
    # 1. server up: state fetched and saved as last known good
    f = Flags(settings)
    f.start(wait_s=5)
    assert f.describe()["source"] == "server"
    assert wait_for(lambda: any(cache_dir.glob("rollguard-*.json")))
    f.close()
    port = feature_server.port
    feature_server.stop()
    # 2. a new process, server down: last known good from cache_dir beats the bootstrap file
    g = Flags(settings)
    g.start(wait_s=0.5)
    try:
        d = g.describe()
        assert d["source"] == "cache" and d["stale"] and d["cache_saved_ms"] is not None
        assert g.evaluate(["from-server"], ANON).enabled["from-server"] is True
    finally:
        g.close()
    # 3. no cache_dir, server down: the bootstrap file
    with socket.socket() as s:  # the port is closed now
        assert s.connect_ex(("127.0.0.1", port)) != 0
    h = Flags(settings.model_copy(update={"cache_dir": None}))
    h.start(wait_s=0.5)
    try:
        assert h.describe()["source"] == "bootstrap"
        assert h.evaluate(["from-server"], ANON).enabled["from-server"] is False
    finally:
        h.close()


def _child_sees_off(flags: Flags, conn: Any) -> None:
    deadline = time.monotonic() + 10
    seen_off = False
    while time.monotonic() < deadline and not seen_off:
        seen_off = flags.evaluate(["pii-on"], ANON).enabled["pii-on"] is False
        time.sleep(0.05)
    conn.send(seen_off)
    conn.close()


def test_a_client_started_before_fork_is_restarted_in_the_child(feature_server: _FeatureServer) -> None:
    import multiprocessing

    f = Flags(FlagSettings(unleash_url=feature_server.url, api_token="tok", refresh_interval_s=1))
    f.start(wait_s=5)
    try:
        assert f.evaluate(["pii-on"], ANON).enabled["pii-on"] is True
        ctx = multiprocessing.get_context("fork")
        parent_end, child_end = ctx.Pipe()
        child = ctx.Process(target=_child_sees_off, args=(f, child_end))
        child.start()
        feature_server.state = {"version": 2, "features": [rollout("pii-on", 100, enabled=False)]}
        assert parent_end.poll(15), "the child did not answer"
        assert parent_end.recv() is True  # the child polls again: it saw the change
        child.join(5)
        assert child.exitcode == 0
    finally:
        f.close()


def test_nothing_is_written_to_the_user_cache_directory(
    tmp_path: Path, feature_server: _FeatureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    f = Flags(FlagSettings(unleash_url=feature_server.url, api_token="tok", refresh_interval_s=1))
    f.start(wait_s=5)
    try:
        assert f.describe()["source"] == "server"
        assert f.evaluate(["from-server"], ANON).enabled["from-server"] is True
    finally:
        f.close()
    assert list(home.rglob("*")) == []
