"""``rollguard demo``: start a local upstream and a gateway, replay real traffic through it, summarise.

``run_demo(n, concurrency)``:

1. builds ``n`` demo requests from the shipped data (``gateway.demo.corpus``);
2. starts the demo upstream stub (``python -m gateway.demo.upstream``) on a free loopback port;
3. starts the embedded store (``gateway.store.EmbeddedValkey``) under a temporary directory;
4. writes a gateway config (models ``demo`` and ``echo`` at the stub, the default policy set, the
   store's URL) and starts the gateway as a subprocess (``python -m uvicorn gateway.app:create_app
   --factory``, ``ROLLGUARD_CONFIG`` = that file) on a free loopback port, then waits for ``/readyz``;
5. replays the corpus through the gateway and a sample straight to the stub (``gateway.demo.replay``)
   and prints the summary tables;
6. stops the gateway (SIGTERM: it flushes its audit queue), raises one anomaly item
   (``raise_demo_anomaly``: the rollout check of a regressed canary; the console shows its
   canary/control comparison), counts the audit records in the interactions stream, stops the
   stub and the store, and removes the temporary directory (unless ``keep_dir`` is given).

Exit code: 0 when requests ran, errors are at most ``MAX_ERROR_SHARE`` of them and the anomaly
item opened; 1 otherwise; 2 when the servers or the store did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import RedisError
from rich.console import Console

from gateway.demo.corpus import DemoItem, build_corpus
from gateway.demo.replay import DEFAULT_CONCURRENCY, DEFAULT_DIRECT_SAMPLE, replay_corpus
from gateway.review.demo import console_banner, demo_review_config
from gateway.store import EmbeddedValkey
from gateway.store.keys import ReviewQueueKeys
from rollguard.errors import StoreError
from rollguard.settings import StoreSettings

MAX_ERROR_SHARE = 0.02
"""Largest share of errored requests for a passing demo (2 %)."""

READY_TIMEOUT_S = 90.0
"""Seconds to wait for the stub and the gateway to answer (policy models load at startup)."""

STOP_GRACE_S = 10.0
"""Seconds between SIGTERM and SIGKILL when stopping a server."""

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""The directory holding the ``gateway`` package (put on the subprocesses' ``PYTHONPATH``)."""


class StartupError(RuntimeError):
    """A demo server exited or did not become ready in time; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` at the time of the call (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def managed_process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in its own process group with output to ``log``; on exit stop it (SIGTERM, then
    SIGKILL after ``STOP_GRACE_S``). Only the process started here is signalled."""
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 (our own interpreter and fixed arguments)
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``proc``, wait ``STOP_GRACE_S``, then SIGKILL it."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_ready(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Poll ``url`` (GET) until it answers 200. Raises ``StartupError`` with the log tail when the
    process exits first or ``timeout_s`` seconds pass."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartupError(f"{url}: process exited with code {proc.returncode}\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback URL built here)
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise StartupError(f"{url}: not ready after {timeout_s:.0f} s\n{_tail(log)}")


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


DEMO_FLAG_THRESHOLD = 0.35
"""Prompt-injection scores from here up to the blocking threshold go to the review queue."""


def demo_config(upstream_url: str, data_dir: Path, redis_url: str | None = None) -> dict[str, Any]:
    """The gateway config for the demo: aliases ``demo`` and ``echo`` served by the stub at
    ``upstream_url`` (server root), no retries (errors must show), the default policy set (no
    ``policies`` key), the store at ``redis_url`` (``None``: embedded under ``data_dir/var``)."""
    return {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {
                    "model": f"openai/{name}",
                    "api_base": upstream_url + "/v1",
                    "api_key": "demo",
                },
            }
            for name in ("demo", "echo")
        ],
        "router_settings": {"num_retries": 0, "timeout": 30},
        "gateway": {"log_level": "warning"},
        "store": {"data_dir": str(data_dir / "var"), "redis_url": redis_url},
        # The default policy set, with borderline prompt-injection scores escalated to review.
        "policies": [
            {"id": "limits", "type": "limits"},
            {"id": "pii", "type": "pii"},
            {"id": "secrets", "type": "secrets"},
            {
                "id": "prompt_injection",
                "type": "prompt_injection",
                "params": {"flag_threshold": DEMO_FLAG_THRESHOLD},
            },
            {"id": "system_prompt_leak", "type": "system_prompt_leak"},
        ],
        "review": demo_review_config(),
    }


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def run_demo(
    n: int = 1000,
    concurrency: int = DEFAULT_CONCURRENCY,
    *,
    direct_sample: int = DEFAULT_DIRECT_SAMPLE,
    console: Console | None = None,
    show_progress: bool = True,
    keep_dir: Path | None = None,
    summary_out: dict[str, Any] | None = None,
    config_overrides: dict[str, Any] | None = None,
    store_dir: Path | None = None,
    anomaly: bool = True,
) -> int:
    """Run the whole demo (see the module docstring) and return the process exit code.

    ``n`` requests at ``concurrency`` in flight; ``direct_sample`` of them also sent straight to
    the stub for the added-latency figures. ``keep_dir``: use this directory for configs, logs and
    the store instead of a temporary one (kept afterwards). ``summary_out``: filled with the
    replay summary (``gateway.demo.replay.summarize``'s keys) plus ``audit_records`` (entries in
    the interactions stream after the gateway stopped, ``None`` if the store did not answer).
    ``config_overrides``: top-level config keys replacing the demo's (e.g. ``{"policies": [...]}``).
    ``store_dir``: keep the embedded store here (``rollguard demo`` uses ``./var``, the store
    ``rollguard serve`` uses, so the review items wait for the console afterwards). ``anomaly``:
    then raise the anomaly item (``raise_demo_anomaly``; exit code 1 when it does not open).
    """
    console = console or Console()
    items = build_corpus(n)
    with contextlib.ExitStack() as stack:
        work = _work_dir(stack, keep_dir)
        console.print(f"[bold]rollguard demo[/bold]: {len(items)} requests, concurrency {concurrency}")
        store_path = store_dir if store_dir is not None else work / "var"
        redis_url = _start_store(stack, store_path, console)
        if redis_url is None:
            return 2
        audit_before, stub_port, gw_port = count_audit_records(redis_url) or 0, free_port(), free_port()
        config = _write_config(work, f"http://127.0.0.1:{stub_port}", redis_url, store_path, config_overrides)
        try:
            summary = _serve_and_replay(
                stack,
                work,
                config,
                redis_url,
                (stub_port, gw_port),
                items,
                concurrency,
                direct_sample,
                console,
                show_progress,
            )
        except StartupError as exc:
            console.print(f"demo servers did not start:\n{exc}", style="red", markup=False, highlight=False)
            return 2
        code = _check_replay(console, summary, work)
        if code == 0 and anomaly:
            code = raise_demo_anomaly(store_path, redis_url, console)
        _report_store(console, summary, redis_url, audit_before)
    if summary_out is not None:
        summary_out.update(summary)
    return code


def _check_replay(console: Console, summary: dict[str, Any], work: Path) -> int:
    """``exit_code(summary)``; on failure the gateway log's tail is printed."""
    code = exit_code(summary)
    if code != 0:
        console.print("[red]demo failed; gateway log tail:[/red]")
        console.print(_tail(work / "gateway.log"), markup=False, highlight=False)
    return code


def raise_demo_anomaly(var_dir: Path, redis_url: str, console: Console) -> int:
    """Step 7 of the demo: the rollout check of a regressed canary of the demo's chat model
    (``gateway.demo.rollout_scenario``: shipped replies for both arms, the same shortcut detectors
    and rollout judge the worker and the controller run, replayed offline in about 20 s). Its
    guardrail breach opens one P1 anomaly item in the ``rollout`` review queue of the store at
    ``redis_url``, carrying the failed metric against its tolerance and a canary/control pair
    answering the same prompt, which the console shows side by side; the report goes to
    ``var_dir / "rollout-demo"``. Returns 0 when the item opened, else 1 (2: the store failed)."""
    from gateway.demo.rollout_scenario import run_rollout_demo

    console.print(
        "[bold]rollout check[/bold]: a regressed canary of demo-chat against its control "
        "(shipped replies, judged offline); a breach opens an anomaly item for review"
    )
    return run_rollout_demo(var_dir, console=console, redis_url=redis_url)


def _work_dir(stack: contextlib.ExitStack, keep_dir: Path | None) -> Path:
    """``keep_dir`` (created), or a temporary directory removed when ``stack`` closes."""
    if keep_dir is None:
        return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rollguard-demo-")))
    keep_dir.mkdir(parents=True, exist_ok=True)
    return keep_dir


def _start_store(stack: contextlib.ExitStack, store_path: Path, console: Console) -> str | None:
    """Acquire the embedded store under ``store_path`` (released when ``stack`` closes); its URL,
    or None (reported) when it does not start."""
    store = EmbeddedValkey(store_path)
    try:
        redis_url = store.acquire()
    except StoreError as exc:
        console.print(f"[red]the embedded store did not start:[/red] {exc.message}", highlight=False)
        return None
    stack.callback(store.release)
    return redis_url


def _write_config(
    work: Path, stub_url: str, redis_url: str, store_path: Path, overrides: dict[str, Any] | None
) -> Path:
    """Write the demo's gateway config (JSON is YAML) to ``work`` and return its path."""
    config = work / "rollguard-demo.yaml"
    cfg = {**demo_config(stub_url, work, redis_url), **(overrides or {})}
    cfg["store"] = {**cfg["store"], "data_dir": str(store_path)}
    config.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return config


def _serve_and_replay(
    stack: contextlib.ExitStack,
    work: Path,
    config: Path,
    redis_url: str,
    ports: tuple[int, int],
    items: list[DemoItem],
    concurrency: int,
    direct_sample: int,
    console: Console,
    show_progress: bool,
) -> dict[str, Any]:
    """Start the upstream stub (kept until ``stack`` closes) and the gateway (stopped on return,
    so its audit queue is flushed), replay ``items`` and return the summary. Raises
    ``StartupError``."""
    stub_url, gw_url = (f"http://127.0.0.1:{p}" for p in ports)
    gw_log = work / "gateway.log"
    stub = stack.enter_context(
        managed_process(
            [sys.executable, "-m", "gateway.demo.upstream", "--port", str(ports[0])],
            _env(),
            work / "upstream.log",
        )
    )
    with managed_process(_gateway_command(ports[1]), _env(ROLLGUARD_CONFIG=str(config)), gw_log) as gw:
        wait_ready(f"{stub_url}/v1/models", stub, work / "upstream.log")
        console.print(f"upstream stub ready at {stub_url}")
        wait_ready(f"{gw_url}/readyz", gw, gw_log)
        console.print(f"gateway ready at {gw_url} (store {redis_url})")
        return asyncio.run(
            replay_corpus(
                items,
                gw_url,
                stub_url,
                concurrency=concurrency,
                direct_sample=direct_sample,
                console=console,
                show_progress=show_progress,
            )
        )


def _report_store(console: Console, summary: dict[str, Any], redis_url: str, audit_before: int) -> None:
    """Add ``audit_records`` and ``review_items`` to ``summary`` (counted after the gateway
    stopped) and print them."""
    total = count_audit_records(redis_url)
    summary["audit_records"] = None if total is None else total - audit_before
    if summary["audit_records"] is not None:
        console.print(
            f"audit records added to the interactions stream: {summary['audit_records']} "
            f"({summary['requests']} replayed + {summary.get('probe_requests', 0)} latency probes)"
        )
    summary["review_items"] = count_review_items(redis_url)
    if summary["review_items"]:
        console.print(
            f"[bold]{summary['review_items']} items are waiting for review.[/bold] Open the console: "
            "run [bold].venv/bin/rollguard serve[/bold], then browse"
        )
        console.print(console_banner("http://127.0.0.1:8080"), markup=False, highlight=False)


def _gateway_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "gateway.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def count_audit_records(redis_url: str, stream: str | None = None) -> int | None:
    """Entries in the interactions stream (``XLEN``), or ``None`` when the store does not answer."""
    name = stream or StoreSettings().interactions_stream
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.xlen(name))
    except RedisError:
        return None
    finally:
        client.close()


def count_review_items(redis_url: str) -> int | None:
    """Open review items over the demo's queues, or ``None`` when the store does not answer."""
    client = redis.Redis.from_url(redis_url)
    total = 0
    try:
        for queue in (q["name"] for q in demo_review_config()["queues"]):
            key = ReviewQueueKeys(queue).open
            kind = client.type(key)
            if kind == b"zset":
                total += int(client.zcard(key))
            elif kind == b"set":
                total += int(client.scard(key))
            elif kind == b"hash":
                total += int(client.hlen(key))
        return total
    except RedisError:
        return None
    finally:
        client.close()


def exit_code(summary: dict[str, Any]) -> int:
    """0 when requests ran and errors <= ``MAX_ERROR_SHARE`` of them, else 1."""
    requests = int(summary.get("requests", 0))
    if requests == 0:
        return 1
    return 0 if int(summary.get("errors", 0)) <= MAX_ERROR_SHARE * requests else 1


def main() -> None:
    """``python -m gateway.demo.run [N] [CONCURRENCY]``."""
    args = sys.argv[1:]
    n = int(args[0]) if args else 1000
    concurrency = int(args[1]) if len(args) > 1 else DEFAULT_CONCURRENCY
    sys.exit(run_demo(n, concurrency))


if __name__ == "__main__":
    main()
