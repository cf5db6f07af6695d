"""gateway.flags against a real Unleash server (unleash-server 7.5.1, started by ``.ci/unleash.sh``).

Environment: ``ROLLGUARD_TEST_UNLEASH_URL`` (e.g. ``http://127.0.0.1:4242/api``; unset -> every test here
is skipped), ``ROLLGUARD_TEST_UNLEASH_ADMIN_TOKEN`` (default ``*:*.test-admin-token``) and
``ROLLGUARD_TEST_UNLEASH_CLIENT_TOKEN`` (default ``*:development.test-client-token``), the tokens that
``tests/unleash/start.mjs`` creates. Flags are created through the admin API with a unique name per test.
Changes are awaited by polling for up to 15 s, never by a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.flags import FlagContext, Flags
from rollguard.settings import FlagSettings

URL = os.environ.get("ROLLGUARD_TEST_UNLEASH_URL", "")
ADMIN_TOKEN = os.environ.get("ROLLGUARD_TEST_UNLEASH_ADMIN_TOKEN", "*:*.test-admin-token")
CLIENT_TOKEN = os.environ.get("ROLLGUARD_TEST_UNLEASH_CLIENT_TOKEN", "*:development.test-client-token")
ENV = "development"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.unleash,
    pytest.mark.skipif(
        not URL,
        reason="ROLLGUARD_TEST_UNLEASH_URL is unset: start a server with `.ci/unleash.sh` and export "
        "ROLLGUARD_TEST_UNLEASH_URL=http://127.0.0.1:4242/api (CI does)",
    ),
]

ANON = FlagContext()


# ----------------------------------------------------------------------------- admin API


class Admin:
    """The Unleash admin API calls the tests need (project ``default``, environment ``development``)."""

    def __init__(self, api_url: str, token: str) -> None:
        self.base = api_url.rstrip("/")
        if not self.base.endswith("/api"):
            self.base += "/api"
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310 - local server
        req.add_header("Authorization", self.token)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - a local test server
            raw = resp.read()
        return json.loads(raw) if raw else None

    def features(self, name: str = "") -> str:
        return "/admin/projects/default/features" + (f"/{name}" if name else "")

    def create_rollout(self, name: str, percent: int, variants: list[dict[str, Any]] | None = None) -> str:
        """Create ``name`` with one flexibleRollout strategy (default stickiness), enable it in
        ``development`` and return the strategy id."""
        self.call("POST", self.features(), {"name": name, "type": "release"})
        strategy = self.call(
            "POST",
            self.features(name) + f"/environments/{ENV}/strategies",
            {
                "name": "flexibleRollout",
                "constraints": [],
                "parameters": {"rollout": str(percent), "stickiness": "default", "groupId": name},
                "variants": variants or [],
            },
        )
        self.call("POST", self.features(name) + f"/environments/{ENV}/on")
        return str(strategy["id"])

    def set_rollout(self, name: str, strategy_id: str, percent: int) -> None:
        self.call(
            "PATCH",
            self.features(name) + f"/environments/{ENV}/strategies/{strategy_id}",
            [{"op": "replace", "path": "/parameters/rollout", "value": str(percent)}],
        )

    def switch(self, name: str, on: bool) -> None:
        self.call("POST", self.features(name) + f"/environments/{ENV}/{'on' if on else 'off'}")

    def delete(self, name: str) -> None:
        for method, path in (("DELETE", self.features(name)), ("DELETE", f"/admin/archive/{name}")):
            with contextlib.suppress(urllib.error.HTTPError):
                self.call(method, path)


@pytest.fixture(scope="module")
def admin() -> Admin:
    a = Admin(URL, ADMIN_TOKEN)
    with urllib.request.urlopen(a.base.removesuffix("/api") + "/health", timeout=5) as resp:  # noqa: S310
        assert json.loads(resp.read())["health"] == "GOOD"
    return a


@pytest.fixture()
def flag_name(admin: Admin) -> Iterator[str]:
    name = f"rg-it-{uuid.uuid4().hex[:10]}"
    yield name
    admin.delete(name)


def settings(url: str = URL, **kw: Any) -> FlagSettings:
    return FlagSettings(unleash_url=url, api_token=CLIENT_TOKEN, environment=ENV, refresh_interval_s=1, **kw)


@pytest.fixture()
def flags() -> Iterator[Flags]:
    f = Flags(settings())
    f.start(wait_s=10)
    yield f
    f.close()


def eventually(pred: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def share_on(f: Flags, name: str, users: int = 200) -> float:
    return (
        sum(f.evaluate([name], FlagContext(user_id=f"user-{i}")).enabled[name] for i in range(users)) / users
    )


# ------------------------------------------------------------------------------------ tests


def test_rollout_change_from_0_to_100_is_seen_by_polling(admin: Admin, flags: Flags, flag_name: str) -> None:
    sid = admin.create_rollout(flag_name, 0)
    assert eventually(lambda: flag_name in flags.describe()["flags"])
    assert share_on(flags, flag_name) == 0.0
    admin.set_rollout(flag_name, sid, 100)
    assert eventually(lambda: share_on(flags, flag_name) == 1.0)
    d = flags.describe()
    assert d["source"] == "server" and not d["stale"]


def test_disabling_the_flag_is_a_kill_switch(admin: Admin, flags: Flags, flag_name: str) -> None:
    admin.create_rollout(flag_name, 100)
    assert eventually(lambda: share_on(flags, flag_name, 50) == 1.0)
    admin.switch(flag_name, on=False)
    assert eventually(lambda: share_on(flags, flag_name, 50) == 0.0)
    admin.switch(flag_name, on=True)
    assert eventually(lambda: share_on(flags, flag_name, 50) == 1.0)
    flags.kill(flag_name)  # the local kill switch needs no server round trip
    assert share_on(flags, flag_name, 50) == 0.0
    flags.revive(flag_name)
    assert share_on(flags, flag_name, 50) == 1.0


def test_anonymous_requests_spread_and_user_ids_stick(admin: Admin, flags: Flags, flag_name: str) -> None:
    admin.create_rollout(flag_name, 50)
    assert eventually(lambda: flag_name in flags.describe()["flags"])
    on = sum(flags.evaluate([flag_name], ANON).enabled[flag_name] for _ in range(1000))
    assert 400 <= on <= 600, on
    for uid in ("alice", "bob", "carol"):
        answers = {
            flags.evaluate([flag_name], FlagContext(user_id=uid)).enabled[flag_name] for _ in range(50)
        }
        assert len(answers) == 1, uid


def test_variants_control_and_canary_stick_to_the_user(admin: Admin, flags: Flags, flag_name: str) -> None:
    variants = [
        {
            "name": n,
            "weight": 500,
            "weightType": "variable",
            "stickiness": "default",
            "payload": {"type": "string", "value": v},
        }
        for n, v in (("control", "model-a"), ("canary", "model-b"))
    ]
    admin.create_rollout(flag_name, 100, variants)
    assert eventually(lambda: flag_name in flags.describe()["flags"])
    counts = {"control": 0, "canary": 0}
    for i in range(300):
        ctx = FlagContext(user_id=f"user-{i}")
        first = flags.evaluate([], ctx, variant_flags=[flag_name])
        name = first.variants[flag_name]
        assert first.payloads[flag_name] == {"control": "model-a", "canary": "model-b"}[name]
        for _ in range(3):
            assert flags.evaluate([], ctx, variant_flags=[flag_name]).variants[flag_name] == name
        counts[name] += 1
    assert 90 <= counts["canary"] <= 210, counts


class _TcpProxy:
    """A real TCP forwarder in front of the Unleash server, so a test can take "the server" away from
    one client without stopping the shared server."""

    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.running = True
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                if not self.running:  # stopped meanwhile: this connection never reaches the server
                    client.close()
                    upstream.close()
                    return
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        with self.lock:
            self.running = False
        self.listener.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()


def test_server_gone_keeps_the_last_known_good_flags_and_recovers(admin: Admin, flag_name: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(URL)
    proxy = _TcpProxy((parts.hostname or "127.0.0.1", parts.port or 80))
    proxied = f"{parts.scheme}://127.0.0.1:{proxy.port}{parts.path}"
    sid = admin.create_rollout(flag_name, 100)
    f = Flags(settings(url=proxied))
    f.start(wait_s=10)
    try:
        assert eventually(lambda: share_on(f, flag_name, 50) == 1.0)
        fetched = f.describe()["last_fetch_ms"]
        # Unchanged flags: 304s count as fetches, but only those that carry an ETag (UnleashClient
        # hands us nothing else). A just-started Unleash answered 304s without one for over 15 s
        # (1 CI run in 5), so this waits up to 30 s; docs/operations.md notes the limitation.
        assert eventually(lambda: f.describe()["last_fetch_ms"] != fetched, timeout=30)
        proxy.stop()
        admin.set_rollout(flag_name, sid, 0)  # a change this client can no longer see
        time.sleep(3)  # three poll intervals without a server
        assert share_on(f, flag_name, 50) == 1.0  # last known good
        d = f.describe()
        assert d["source"] == "server" and flag_name in d["flags"]
        assert eventually(lambda: f.describe()["stale"], timeout=10)
        # the server comes back: the client catches up on its own
        proxy = _TcpProxy(proxy.target, port=proxy.port)
        assert eventually(lambda: share_on(f, flag_name, 50) == 0.0)
        assert not f.describe()["stale"]
    finally:
        f.close()
        proxy.stop()
