"""``rollguard serve`` startup failures as an operator meets them, in real subprocesses: a busy port,
a config ``serve`` rejects (``config check`` must reject the same one, with the same one-line error),
and a failure after the embedded Valkey started (it must be stopped, not orphaned)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from gateway.store import EmbeddedValkey
from tests.servers import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

MODEL = (
    "model_list:\n"
    "  - {model_name: m, litellm_params: {model: openai/m, api_base: 'http://127.0.0.1:9/v1', api_key: k}}\n"
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLLGUARD_", "OTEL_"))}
    env["PYTHONPATH"] = str(REPO)
    return env


def rollguard(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_serve_on_a_busy_port_exits_at_once_and_starts_nothing(tmp_path: Path, busy_port: int) -> None:
    started = time.monotonic()
    proc = rollguard(tmp_path, "serve", "--port", str(busy_port), timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    assert error_lines(proc.stderr) == [
        f"error: port {busy_port} on 127.0.0.1 is in use (stop the other server or pass --port)"
    ]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "var").exists()  # no embedded Valkey, no demo upstream was started
    assert elapsed < 30


BAD_CONFIGS = [
    pytest.param(
        "model_list:\n  - {model_name: m, litellm_params: {model: openai/m, rollguard_path: fast}}\n",
        "model_list[0].litellm_params.rollguard_path: rollguard_path must be 'lean' or 'litellm'",
        id="model_list",
    ),
    pytest.param(
        "model_list:\n  - {model_name: m, litellm_params: {model: openai/m, api_base: 'not a url'}}\n",
        "model_list[0].litellm_params.api_base: not an http(s) URL: 'not a url'",
        id="model_list-api_base",
    ),
    pytest.param(
        "model_list:\n  - {model_name: m, litellm_params: {model: nosuchprovider/whatever}}\n",
        "model_list[0].litellm_params.model: unknown provider 'nosuchprovider'",
        id="model_list-provider",
    ),
    pytest.param(
        MODEL + "gateway: {host: 0.0.0.0}\n",
        "gateway.host: refusing to bind 0.0.0.0 without API keys",
        id="gateway",
    ),
    pytest.param(
        MODEL + "policies: [{id: p, type: pii, params: {nope: 1}}]\n",
        "policies: policy 'p': bad params for policy type 'pii'",
        id="policies",
    ),
    pytest.param(
        MODEL + "flags: {unleash_url: 'not a url'}\n",
        "flags.unleash_url: not an http(s) URL: 'not a url'",
        id="flags-url",
    ),
    pytest.param(
        MODEL + "flags: {unleash_url: 'http://127.0.0.1:9', api_token: os.environ/ROLLGUARD_TEST_UNSET}\n",
        "flags.api_token: flags.api_token is required with flags.unleash_url",
        id="flags-token",
    ),
    pytest.param(
        MODEL + "store: {redis_url: 'localhost:6379'}\n",
        "store.redis_url: not a redis://, rediss:// or unix:// URL",
        id="store",
    ),
    pytest.param(
        MODEL + "tenants: {acme: {max_chars: 0}}\n",
        "tenants.acme.max_chars: Input should be greater than or equal to 1",
        id="tenants",
    ),
    pytest.param(
        MODEL + "review: {reviewers: [{name: a, token: short, role: god}]}\n",
        "review.reviewers.0.role: Input should be 'reviewer', 'lead' or 'operator'",
        id="review",
    ),
    pytest.param(
        MODEL + "detectors: {bogus_knob: 3}\n",
        "detectors.bogus_knob: Extra inputs are not permitted",
        id="detectors",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_config_check_and_serve_reject_the_same_config_with_one_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "rollguard.yaml"
    path.write_text(text)
    check = rollguard(tmp_path, "config", "check", str(path))
    serve = rollguard(tmp_path, "serve", "-c", str(path), "--port", str(free_port()), timeout=60)
    assert check.returncode == 2, check.stdout
    assert serve.returncode == 2, serve.stderr[-2000:]
    assert error_lines(check.stderr) == error_lines(serve.stderr)
    [line] = error_lines(serve.stderr)
    assert line.startswith(f"error: {path}: {expected}")
    assert "Traceback" not in check.stderr + serve.stderr + serve.stdout
    assert not (tmp_path / "var").exists()  # rejected before anything started


def test_startup_failure_after_the_store_started_stops_the_embedded_valkey(tmp_path: Path) -> None:
    """A real failure inside the lifespan after Valkey is up: a spilled record cannot be written
    back because the interactions stream key holds a string (WRONGTYPE)."""
    var = tmp_path / "var"
    seed = EmbeddedValkey(var)
    client = redis.Redis.from_url(seed.acquire())
    client.set("rollguard:interactions", "not a stream")
    client.close()
    seed.release()
    (var / "spill").mkdir()
    (var / "spill" / "interactions-1-1.jsonl").write_bytes(orjson.dumps({"id": "int-1"}) + b"\n")

    proc = rollguard(tmp_path, "serve", "--port", str(free_port()), timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out[-2000:]
    assert "embedded Valkey started" in out
    [failure] = [line for line in out.splitlines() if "startup failed: " in line]
    assert "cannot restore spilled interactions" in failure and "WRONGTYPE" in failure
    assert "Traceback" not in out
    info = orjson.loads((var / "redis.json").read_bytes())
    assert info["pid"] == -1  # released by this process, not left running under PID 1
    assert EmbeddedValkey(var).running() is None


def test_serve_names_the_command_line_when_an_option_is_the_problem(tmp_path: Path) -> None:
    proc = rollguard(tmp_path, "serve", "--host", "0.0.0.0", "--port", str(free_port()), timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert error_lines(proc.stderr) == [
        "error: command line (--host): gateway.host: refusing to bind 0.0.0.0 without API keys:"
        " add gateway.api_keys or bind 127.0.0.1"
    ]
