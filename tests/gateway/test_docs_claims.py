"""What the README and docs tell a fresh user, pinned to the code: the demo model's script is a
JSON string in ``metadata``, the console's tokens, ``/v1/detectors`` needs a worker, the client
error statuses."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import aiohttp

from gateway.demo.upstream import start_stub

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


async def test_the_readme_stub_script_example_works_as_written() -> None:
    m = re.search(r"^script = (\{.*\})$", README, re.MULTILINE)
    assert m is not None and 'metadata={"stub_script": json.dumps(script)}' in README
    script = ast.literal_eval(m.group(1))
    runner, base = await start_stub()
    try:
        body = {
            "model": "echo",
            "stream": True,
            "messages": [{"role": "user", "content": "Hi"}],
            "metadata": {"stub_script": json.dumps(script)},
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{base}/chat/completions", json=body) as r,
        ):
            assert r.status == 200
            raw = (await r.read()).decode()
    finally:
        await runner.cleanup()
    pieces = [json.loads(x[6:]) for x in raw.split("\n\n") if x.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in pieces if c["choices"])
    assert text == "Hello"
