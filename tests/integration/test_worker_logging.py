"""``serve --workers N``: every worker process logs in the gateway's format (time, level, logger,
``[request id]``) at the configured level, as a single-process ``serve`` does."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.servers import serve_workers

pytestmark = pytest.mark.integration

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) [\w.]+ \[([^\]]+)\]: ")


def test_every_worker_logs_in_the_gateway_format(tmp_path: Path) -> None:
    with serve_workers(tmp_path) as run:
        body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(f"http://127.0.0.1:{run.port}/v1/chat/completions", json=body, timeout=60)
        assert r.status_code == 200
    out = run.output
    ready = [line for line in out.splitlines() if "rollguard gateway ready" in line]
    assert len(ready) == 2, out[-3000:]  # one per worker, each in the gateway's format
    for line in ready:
        match = LINE.match(line)
        assert match is not None and match.group(1) == "INFO" and match.group(2) == "-", line
    assert "Traceback" not in out, out[-3000:]
