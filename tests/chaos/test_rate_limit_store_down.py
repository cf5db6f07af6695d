"""Rate limits when the store goes away (issue 12, docs/operations.md "Store down: fail open"): a
real gateway on its own real Valkey with ``rpm: 1``; the Valkey is stopped, requests are admitted
unchecked with one warning (not one per request), and once the Valkey is back on its port (with
its append-only file) the budget holds again."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from rollguard.settings import RollguardSettings
from tests.chaos.faults import valkey
from tests.integration.conftest import Stub, base_config, stub
from tests.servers import serve_app

__all__ = ["stub"]

pytestmark = pytest.mark.integration


def chat(url: str) -> int:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code


def test_store_down_fails_open_then_limits_hold_again(
    tmp_path: Path, stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    server = valkey(tmp_path / "valkey")
    port = server.port
    url = f"redis://127.0.0.1:{port}/0"
    cfg = base_config(stub, url, policies=[], rate_limits={"tenants": {"default": {"rpm": 1}}})
    cfg["store"]["data_dir"] = str(tmp_path / "var")
    try:
        with serve_app(create_app(RollguardSettings(**cfg))) as srv:
            assert [chat(srv.url), chat(srv.url)] == [200, 429]  # the budget holds
            server.stop()
            with caplog.at_level(logging.WARNING, logger="rollguard.ratelimit"):
                down = [chat(srv.url) for _ in range(5)]
            assert down == [200] * 5  # fail open: served, not refused, not a 5xx
            warned = [r for r in caplog.records if "store unavailable" in r.getMessage()]
            assert len(warned) == 1
            server = valkey(tmp_path / "valkey", port=port)  # back, with its append-only file
            assert chat(srv.url) == 429  # the window kept its request: the limit holds again
    finally:
        server.stop()
