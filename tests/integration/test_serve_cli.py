"""``rollguard serve`` as a user runs it: no configuration at all (embedded Valkey under ./var,
bootstrap flags, the local demo model), and the refusal to bind a public address without keys."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, wait_http

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLLGUARD_", "OTEL_"))}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_serve_with_no_configuration(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=90)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"store": True, "models": True}
        assert ready.json()["policies"] == 6 and ready.json()["flags"] == "bootstrap"
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()
        assert "demo" in [m["id"] for m in models["data"]]
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            timeout=60,
            json={"model": "demo", "messages": [{"role": "user", "content": "How do I boil an egg?"}]},
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"].strip()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "without authentication" in out
    assert (tmp_path / "var").is_dir()
    assert "Traceback" not in out


def test_public_bind_without_keys_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "refusing to bind 0.0.0.0 without API keys" in proc.stderr
    assert "Traceback" not in proc.stderr
