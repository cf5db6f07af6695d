"""Processes of the benchmark: the upstream stubs, the gateway under test, the load generator, and
what is read from ``/proc`` about them (CPU seconds, RSS)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PYTHON = sys.executable


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """Live descendant process ids of ``pid`` (uvicorn's workers with ``--workers N``, the
    gateway's large-input child), from the parent ids in ``/proc/<p>/stat``; [] without ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds so far of process ``pid`` and its live descendants (Linux
    ``/proc/<p>/stat`` fields 14 and 15, in clock ticks); ``None`` where ``/proc`` is not
    available. A descendant that exits between two readings takes its CPU with it: the gateway's
    workers live as long as the cells."""
    total = 0
    try:
        fields = _stat(pid)
        total = int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None
    for child in descendants(pid):
        try:
            fields = _stat(child)
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB (``VmRSS`` of ``/proc/<pid>/status``); ``None`` if
    unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        return None
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(
    args: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in its own session; on exit SIGTERM it (then SIGKILL after 10 s)."""
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log and not isinstance(out, int):
            out.close()


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 120.0) -> None:
    """Poll ``url`` until it answers 200. Raises ``RuntimeError`` with the log tail when the process
    exits or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}: {tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback URL we built)
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout_s:g} s: {tail(log)}")


def tail(log: Path, chars: int = 1500) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def probe(url: str, model: str, stream: bool) -> tuple[int, dict[str, str]]:
    """One small request: ``(status, x-rollguard-* response headers)``."""
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Hello, how are you?"}], "stream": stream}
    ).encode()
    req = urllib.request.Request(  # noqa: S310 (loopback URL we built)
        url,
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer bench"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
            resp.read()
            headers = {k.lower(): v for k, v in resp.headers.items() if k.lower().startswith("x-rollguard")}
            return int(resp.status), headers
    except urllib.error.HTTPError as exc:
        return int(exc.code), {}


def stub_command(port: int, delay_ms: float) -> list[str]:
    """The benchmark upstream (``bench/stub.py``) on 127.0.0.1:``port``."""
    return [PYTHON, str(BENCH / "stub.py"), "--port", str(port), "--delay-ms", str(delay_ms)]


def gateway_command(port: int, workers: int = 1) -> list[str]:
    """``workers`` uvicorn workers serving the gateway app factory on 127.0.0.1:``port`` (as
    ``rollguard serve --workers N`` does)."""
    return [
        PYTHON, "-m", "uvicorn", "gateway.app:create_app", "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def run_loadgen(
    url: str,
    model: str,
    stream: bool,
    concurrency: int,
    *,
    duration_s: float | None = None,
    requests: int | None = None,
    start: int = 0,
    turns: int = 4,
) -> dict[str, Any]:
    """``bench/loadgen.py`` in its own process; its JSON summary."""
    cmd = [PYTHON, str(BENCH / "loadgen.py"), "--url", url, "--model", model]
    cmd += ["--concurrency", str(concurrency), "--start", str(start), "--turns", str(turns)]
    cmd += ["--stream"] if stream else []
    cmd += ["--duration", str(duration_s)] if duration_s is not None else []
    cmd += ["--requests", str(requests)] if requests is not None else []
    limit = (duration_s or 0) + (requests or 0) / 20 + 120
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=limit).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def machine() -> dict[str, Any]:
    """Date, CPU count and model, Python version, platform and load average of this machine."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = code = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "log", "-1", "--format=%h"]
        commit = subprocess.run(git, cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        code = subprocess.run(
            [*git, "--", "gateway", "policies", "detectors", "rollguard"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
        "code_commit": code,  # the last commit that changed the code under test
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
