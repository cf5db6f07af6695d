"""CPU per request by stage, from a sampling profile of the gateway process taken from outside
(``py-spy record --format raw``: no code in the gateway, no instrumentation hook).

py-spy (MIT, on PyPI) samples the Python stacks of the running gateway ``rate`` times a second; without
``--idle`` a sample is taken only while a thread is running (not parked in ``epoll``), so the samples
are proportional to CPU time. The raw (collapsed) format is one line per distinct stack:
``frame;frame;...;frame COUNT``, root first, each frame ``function (path/to/file.py:line)``.

Each stack is given to the first stage in ``STAGES`` that one of its frames matches (priority order,
so that e.g. a redaction inside the audit record counts as the audit record, and a policy running in
``_complete`` counts as post_call). The mapping is by file and function name; when the gateway's
modules are renamed, edit ``STAGES`` (the report lists the unmatched share as ``other``):

==========================  =====================================================================
stage                       frames (file suffix or ``file:function``)
==========================  =====================================================================
audit record                ``gateway/audit.py``, ``gateway/store/``, ``ChatService._finish``,
                            ``policies/privacy.py``, redis
post_call/stream policies   ``policies/``/``detectors/`` under ``_complete``/``_stream``/``_relay``
                            or ``gateway/streaming/``
pre_call policies           ``policies/``, ``detectors/`` (anywhere else)
flags                       ``gateway/flags/``, ``UnleashClient``, ``evaluate_flags``, ``resolve_model``
upstream relay              ``gateway/upstream/``, ``gateway/relay.py``, ``gateway/streaming/``,
                            aiohttp, litellm
request parsing+validation  ``gateway/chat_request.py``, ``gateway/auth.py``, starlette requests
response                    ``gateway/sse_response.py``, ``gateway/errors.py``, starlette responses
handler (other)             ``gateway/service.py``, ``gateway/routes/``, ``gateway/app.py``,
                            ``gateway/telemetry.py``, opentelemetry, ``rollguard/``
server + event loop         uvicorn, uvloop, asyncio (HTTP parsing of the request, socket writes)
other                       anything else
==========================  =====================================================================
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")

POST_FUNCS = ("_complete", "_stream", "_relay")

STAGES: list[tuple[str, tuple[str, ...]]] = [
    (
        "audit record",
        (
            "gateway/audit.py",
            "gateway/store/",
            "gateway/service.py:_finish",
            "policies/privacy.py",
            "/redis/",
        ),
    ),
    ("post_call/stream policies", ()),  # decided in ``stage_of``: policies under a post frame
    ("pre_call policies", ("/policies/", "/detectors/")),
    (
        "flags",
        ("gateway/flags/", "UnleashClient", "/UnleashClient/", ":evaluate_flags", ":resolve_model"),
    ),
    (
        "upstream relay",
        (
            "gateway/upstream/",
            "gateway/relay.py",
            "gateway/streaming/",
            "/aiohttp/",
            "/litellm/",
            "/yarl/",
            "/multidict/",
        ),
    ),
    (
        "request parsing+validation",
        ("gateway/chat_request.py", "gateway/auth.py", "starlette/requests.py"),
    ),
    ("response", ("gateway/sse_response.py", "gateway/errors.py", "starlette/responses.py")),
    (
        "handler (other)",
        (
            "gateway/service.py",
            "gateway/routes/",
            "gateway/app.py",
            "gateway/telemetry.py",
            "/opentelemetry/",
            "/rollguard/",
        ),
    ),
    ("server + event loop", ("/uvicorn/", "/uvloop/", "/asyncio/", "/httptools/")),
]
"""Stage name -> frame patterns, in priority order (see the module docstring)."""

STAGE_NAMES = [name for name, _ in STAGES] + ["other"]


def _frames(stack: str) -> list[str]:
    """``/file:function`` keys of the frames of one collapsed stack, root first (py-spy prints
    paths relative to ``sys.path``, e.g. ``policies/pipeline.py``; the leading ``/`` lets a pattern
    like ``/policies/`` match a whole path segment)."""
    out = []
    for raw in stack.split(";"):
        m = _FRAME.match(raw.strip())
        if m:
            out.append(f"/{m['file'].lstrip('/')}:{m['func'].rsplit('.', 1)[-1]}")
        else:
            out.append("/" + raw.strip())
    return out


def _matches(frame: str, patterns: Iterable[str]) -> bool:
    return any(p in frame for p in patterns)


def stage_of(stack: str) -> str:
    """The stage a collapsed stack (``frame;frame;...``, root first) is charged to."""
    frames = _frames(stack)
    policy_frames = ("/policies/", "/detectors/")
    for name, patterns in STAGES:
        if name == "post_call/stream policies":
            in_policy = any(_matches(f, policy_frames) for f in frames)
            under_post = any(
                f.endswith(tuple(":" + fn for fn in POST_FUNCS)) or "gateway/streaming/" in f for f in frames
            )
            if in_policy and under_post:
                return name
            continue
        if any(_matches(f, patterns) for f in frames):
            return name
    return "other"


def aggregate(raw_text: str) -> dict[str, int]:
    """Sample counts per stage from py-spy's raw output (every stage present, zero if none)."""
    counts: Counter[str] = Counter({name: 0 for name in STAGE_NAMES})
    for line in raw_text.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[stage_of(stack)] += int(n)
    return dict(counts)


def breakdown(counts: dict[str, int], cpu_ms_per_request: float | None) -> list[dict[str, Any]]:
    """Rows ``{stage, samples, share, cpu_ms}``: the share of samples times the measured gateway CPU
    per request (ms) of the same run."""
    total = sum(counts.values())
    rows = []
    for name in STAGE_NAMES:
        share = counts.get(name, 0) / total if total else 0.0
        cpu = round(share * cpu_ms_per_request, 3) if cpu_ms_per_request is not None else None
        rows.append({"stage": name, "samples": counts.get(name, 0), "share": round(share, 3), "cpu_ms": cpu})
    return rows


def py_spy() -> str | None:
    """The ``py-spy`` executable next to this Python, or on ``PATH``; ``None`` if absent."""
    import shutil
    import sys

    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start_record(pid: int, out: Path, duration_s: float, rate: int = 200) -> subprocess.Popen[bytes]:
    """Start ``py-spy record`` on ``pid`` for ``duration_s`` seconds (raw format, ``--nonblocking``
    so the gateway is never paused); wait on the returned process, then read ``out``. Raises
    ``FileNotFoundError`` when py-spy is not installed."""
    exe = py_spy()
    if exe is None:
        raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
    cmd = [exe, "record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
    cmd += ["--duration", str(max(1, round(duration_s))), "--rate", str(rate), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
