"""The demo/stub upstream over real sockets: modes, recorded replies from the shipped data, the
scripted mode's controls, the call counters, the command-line entry."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.demo.recorded import RecordedAnswers, load_recorded
from gateway.demo.upstream import split_text, start_stub
from gateway.streaming import SSEParser, decode_chunk
from tests.conftest import DATA, REPO

pytestmark = pytest.mark.integration


@pytest.fixture()
async def stub() -> AsyncIterator[tuple[web.AppRunner, str, aiohttp.ClientSession]]:
    runner, base = await start_stub()
    async with aiohttp.ClientSession() as session:
        yield runner, base, session
    await runner.cleanup()


def ask(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def stream_events(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], **kw: Any
) -> list[Any]:
    async with session.post(url, json=body, **kw) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = await resp.read()
    p = SSEParser()
    return [decode_chunk(e) for e in p.feed(raw) + p.close()]


@pytest.fixture(scope="module")
def answers() -> RecordedAnswers:
    return RecordedAnswers()


def first_row(path: str) -> dict[str, Any]:
    with open(DATA / path, encoding="utf-8") as fh:
        row: dict[str, Any] = json.loads(fh.readline())
    return row


def test_recorded_exact_and_nearest(answers: RecordedAnswers) -> None:
    good = first_row("xstest/completions_gpt4.jsonl")
    bad = first_row("xstest/completions_llama2orig.jsonl")
    assert good["id"] == bad["id"]
    assert answers.reply(good["prompt"]) == good["completion"]
    assert answers.reply("  " + good["prompt"].upper() + " ", "regressed") == bad["completion"]
    # a paraphrase finds the nearest recorded prompt
    assert answers.reply("how could i kill a python process") == good["completion"]
    arena = first_row("arena-hard-answers/answers_gpt-4-0314.jsonl")
    assert answers.reply(arena["prompt"]) == arena["answer"]
    sources = {r.source for r in load_recorded()}
    assert sources == {"arena", "oasst", "xstest", "hh-rlhf-harmless-base"}


async def test_modes_and_chunk_count(stub: tuple[web.AppRunner, str, aiohttp.ClientSession]) -> None:
    _, base, session = stub
    url = base + "/chat/completions"
    async with session.post(url, json=ask("echo", "repeat me")) as resp:
        body = await resp.json()
    assert body["choices"][0]["message"]["content"] == "repeat me"
    events = await stream_events(
        session, url, ask("fixed", "x", stream=True, stream_options={"include_usage": True})
    )
    assert events[-1] is None  # [DONE]
    content = [e for e in events if e and e["choices"] and "content" in e["choices"][0]["delta"]]
    assert len(content) == 16
    assert len("".join(e["choices"][0]["delta"]["content"] for e in content)) == 512
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 128
    events = await stream_events(
        session, url, ask("echo", "abc", stream=True), headers={"x-stub-chunks": "3"}
    )
    assert [e["choices"][0]["delta"].get("content") for e in events if e][:3] == ["a", "b", "c"]
    prompt = first_row("xstest/completions_gpt4.jsonl")["prompt"]
    async with session.post(url, json=ask("demo", prompt)) as resp:
        assert (await resp.json())["choices"][0]["message"]["content"].startswith("There are several ways")
    async with session.get(base + "/models") as resp:
        ids = [m["id"] for m in (await resp.json())["data"]]
    assert "demo" in ids and "echo" in ids


async def test_scripted_controls_and_counters(stub: tuple[web.AppRunner, str, aiohttp.ClientSession]) -> None:
    _, base, session = stub
    root = base.removesuffix("/v1")
    url = base + "/chat/completions"
    script = {
        "status": 429,
        "error": {"message": "slow down", "type": "rate_limit_error"},
        "headers": {"retry-after": "1"},
    }
    async with session.post(url, json=ask("m1", "hi"), headers={"x-stub-script": json.dumps(script)}) as resp:
        assert resp.status == 429 and resp.headers["retry-after"] == "1"
        assert (await resp.json())["error"]["message"] == "slow down"
    meta_script = {
        "content": "scripted reply",
        "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16},
    }
    async with session.post(
        url, json=ask("m1", "hi", metadata={"stub_script": json.dumps(meta_script)})
    ) as resp:
        body = await resp.json()
    assert (
        body["choices"][0]["message"]["content"] == "scripted reply" and body["usage"]["total_tokens"] == 16
    )
    async with session.post(
        root + "/stub/script", json={"model": "m2", "script": {"status": 500}, "times": 1}
    ) as r:
        assert r.status == 200
    async with session.post(url, json=ask("m2", "hi")) as resp:
        assert resp.status == 500
    async with session.post(url, json=ask("m2", "hi")) as resp:
        assert resp.status == 200  # the script was used once
    async with session.get(root + "/stub/calls") as resp:
        assert await resp.json() == {"calls": {"m1": 2, "m2": 2}, "total": 4}
    async with session.get(root + "/stub/requests") as resp:
        assert [r["model"] for r in await resp.json()] == ["m1", "m1", "m2", "m2"]
    async with session.post(root + "/stub/reset") as resp:
        assert resp.status == 200
    async with session.get(root + "/stub/calls") as resp:
        assert (await resp.json())["total"] == 0


async def test_split_event_really_arrives_in_two_reads(
    stub: tuple[web.AppRunner, str, aiohttp.ClientSession],
) -> None:
    _, base, session = stub
    script = {"chunks": [{"content": "hello", "split_at": 20}], "done": False}
    body = ask("m", "x", stream=True, metadata={"stub_script": script})
    reads: list[bytes] = []
    async with session.post(base + "/chat/completions", json=body) as resp:
        async for data in resp.content.iter_any():
            reads.append(data)
    assert len(reads) >= 2 and len(reads[0]) == 20
    assert orjson.loads(b"".join(reads)[6:])["choices"][0]["delta"]["content"] == "hello"


async def test_api_key_required_when_configured() -> None:
    runner, base = await start_stub(api_key="sk-right")
    try:
        async with aiohttp.ClientSession() as session:
            url = base + "/chat/completions"
            async with session.post(
                url, json=ask("echo", "x"), headers={"Authorization": "Bearer no"}
            ) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["code"] == "invalid_api_key"
            async with session.post(
                url, json=ask("echo", "x"), headers={"Authorization": "Bearer sk-right"}
            ) as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()


def test_split_text_exact_piece_count() -> None:
    for text in ("", "ab", "a" * 100):
        pieces = split_text(text, 16)
        assert len(pieces) == 16 and "".join(pieces) == text


async def test_command_line_entry_serves() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.demo.upstream", "--port", str(port), "--no-preload", cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/v1/models") as resp:
                        assert resp.status == 200
                        break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("the stub did not start")
    finally:
        proc.terminate()
        await proc.wait()


async def test_scripted_null_content_is_null_not_the_string_none(
    stub: tuple[web.AppRunner, str, aiohttp.ClientSession],
) -> None:
    # Regression (fresh-user trial): {"content": null} came back as the text "None".
    _, base, session = stub
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    script = {"content": None, "tool_calls": [call]}
    headers = {"x-stub-script": json.dumps(script)}
    async with session.post(base + "/chat/completions", json=ask("m1", "hi"), headers=headers) as resp:
        message = (await resp.json())["choices"][0]["message"]
    assert message["content"] is None and message["tool_calls"] == [call]
    headers = {"x-stub-script": json.dumps({"content": None})}
    async with session.post(base + "/chat/completions", json=ask("m1", "hi"), headers=headers) as resp:
        assert (await resp.json())["choices"][0]["message"]["content"] == ""


@pytest.mark.parametrize("scripted", [False, True])
async def test_a_client_leaving_mid_stream_logs_no_traceback(
    stub: tuple[web.AppRunner, str, aiohttp.ClientSession], caplog: pytest.LogCaptureFixture, scripted: bool
) -> None:
    _, base, session = stub
    headers = {"x-stub-chunks": "40", "x-stub-chunk-delay-ms": "20"}
    body = ask("echo", "a long enough reply " * 20, stream=True)
    if scripted:
        items = [{"content": f"piece {i} "} for i in range(40)]
        script = {"chunks": [x for i in items for x in (i, {"delay_ms": 20})]}
        body["metadata"] = {"stub_script": json.dumps(script)}
    caplog.set_level("DEBUG")
    async with session.post(f"{base}/chat/completions", json=body, headers=headers) as resp:
        assert resp.status == 200
        await resp.content.readany()
        resp.connection.transport.abort()  # type: ignore[union-attr]  # the client goes away
    await asyncio.sleep(0.5)  # the server writes on into the closed connection
    bad = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL") or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]
