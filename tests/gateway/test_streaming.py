"""Unit tests of the SSE parser, the hold-back window, tool-call reassembly and the stream guard."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from gateway.streaming import (
    DONE,
    HoldbackWindow,
    SSEEvent,
    SSEParser,
    StreamGuard,
    ToolCallAssembler,
    decode_chunk,
    encode_sse,
    error_event,
    guard_stream,
)
from rollguard.errors import UpstreamUnavailable
from rollguard.types import Verdict
from tests.gateway.chunks import chunk

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


async def redact_emails(text: str) -> tuple[Verdict, str]:
    """A tiny stand-in for the pii policy's stream stage."""
    new = EMAIL.sub("<EMAIL_ADDRESS_1>", text)
    return (Verdict.REDACT if new != text else Verdict.ALLOW), new


def parts_of(secret: str, n: int = 3) -> list[str]:
    return [secret[i : i + n] for i in range(len(secret) - n + 1)]


def parse_all(pieces: list[bytes]) -> list[SSEEvent]:
    p = SSEParser()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(p.feed(piece))
    events.extend(p.close())
    return events


# ---------------------------------------------------------------------------------------- SSE parser


def test_parser_every_split_gives_same_events() -> None:
    chunk = {"id": "c1", "choices": [{"index": 0, "delta": {"content": "héllo wörld"}}]}
    stream = (
        b": keep-alive\r\n\r\n"
        + b"data:\n\n"
        + encode_sse(chunk).replace(b"\n", b"\r\n")
        + b'event: message\ndata: {"a":\ndata: 1}\n\n'
        + b"data: [DONE]"
    )
    expected = parse_all([stream])
    assert [e.data for e in expected] == ["", orjson.dumps(chunk).decode(), '{"a":\n1}', "[DONE]"]
    assert expected[2].event == "message"
    for i in range(1, len(stream)):
        assert parse_all([stream[:i], stream[i:]]) == expected, i
    # one byte at a time (splits a multi-byte UTF-8 character and every CRLF)
    assert parse_all([stream[i : i + 1] for i in range(len(stream))]) == expected


def test_decode_chunk() -> None:
    assert decode_chunk(SSEEvent("[DONE]")) is None
    assert decode_chunk(SSEEvent("")) == {}
    assert decode_chunk(SSEEvent('{"a":\n1}')) == {"a": 1}
    with pytest.raises(UpstreamUnavailable) as err:
        decode_chunk(SSEEvent('{"id": "x", "secret'))
    assert "secret" not in err.value.message
    assert err.value.status == 502
    with pytest.raises(UpstreamUnavailable):
        decode_chunk(SSEEvent("[1, 2]"))


def test_parser_lone_cr_line_ends() -> None:
    events = parse_all([b"data: a\r", b"\rdata: b\r\r"])
    assert [e.data for e in events] == ["a", "b"]


# ---------------------------------------------------------------------------------------- hold-back


@pytest.mark.parametrize("holdback", [0, 1, 4, 8, 16, 128])
async def test_email_split_across_chunks_is_redacted_and_never_partly_released(holdback: int) -> None:
    window = HoldbackWindow(redact_emails, holdback)
    pieces = [await window.feed("Please write to ana.go"), await window.feed("mez@example.com today.")]
    pieces.append(await window.finish())
    assert "".join(pieces) == "Please write to <EMAIL_ADDRESS_1> today."
    for piece in pieces:
        for part in parts_of("ana.gomez@example.com"):
            assert part not in piece
    assert window.verdict is Verdict.REDACT


async def test_every_chunking_of_a_text_releases_the_redacted_text_only() -> None:
    text = "Mail bob@corp.io or ana.gomez@example.com, then x@y.org. Thanks a lot, see you."
    secrets = ["bob@corp.io", "ana.gomez@example.com", "x@y.org"]
    expected = EMAIL.sub("<EMAIL_ADDRESS_1>", text)
    for holdback in (0, 3, 10):
        for size in (1, 2, 5, 7, 13):
            window = HoldbackWindow(redact_emails, holdback)
            pieces = [await window.feed(text[i : i + size]) for i in range(0, len(text), size)]
            pieces.append(await window.finish())
            assert "".join(pieces) == expected, (holdback, size)
            for piece in pieces:
                for secret in secrets:
                    for part in parts_of(secret, 4):
                        assert part not in piece, (holdback, size, piece)


PHONE = re.compile(r"\b\d{3} \d{3} \d{4}\b")


async def redact_phones(text: str) -> tuple[Verdict, str]:
    new = PHONE.sub("<PHONE_NUMBER_1>", text)
    return (Verdict.REDACT if new != text else Verdict.ALLOW), new


async def test_entity_with_spaces_is_protected_by_the_holdback() -> None:
    text = "Call me at 555 123 4567 tomorrow, or at 555 987 6543 after six in the evening."
    expected = PHONE.sub("<PHONE_NUMBER_1>", text)
    for size in (1, 3, 4, 9):
        window = HoldbackWindow(redact_phones, 16)
        pieces = [await window.feed(text[i : i + size]) for i in range(0, len(text), size)]
        pieces.append(await window.finish())
        assert "".join(pieces) == expected
        assert not any(g in p for p in pieces for g in ("555", "123", "4567", "987", "6543"))
        assert window.boundary_rewrites == 0


async def test_prefix_that_already_looks_complete_is_judged_whole() -> None:
    window = HoldbackWindow(redact_emails, 0)
    out = [await window.feed("write ana@example.com"), await window.feed(".br now")]
    out.append(await window.finish())
    assert "".join(out) == "write <EMAIL_ADDRESS_1> now"
    assert all(".br" not in p and "example" not in p for p in out)


async def test_nothing_within_holdback_is_released_before_the_end() -> None:
    seen: list[str] = []

    async def allow(text: str) -> tuple[Verdict, str]:
        seen.append(text)
        return Verdict.ALLOW, text

    window = HoldbackWindow(allow, 20)
    released = ""
    text = "one two three four five six seven eight nine ten eleven twelve"
    received = ""
    for word in text.split(" "):
        received += word + " "
        released += await window.feed(word + " ")
        assert len(received) - len(released) >= min(20, len(received))
        assert received.startswith(released)
    released += await window.finish()
    assert released == received
    # the check does not run on chunks that could not release anything
    assert window.checks < len(text.split(" "))


async def test_block_stops_release_and_nothing_unchecked_leaks() -> None:
    async def block_on_secret(text: str) -> tuple[Verdict, str]:
        return (Verdict.BLOCK if "SECRET" in text else Verdict.ALLOW), text

    window = HoldbackWindow(block_on_secret, 8)
    out = [await window.feed("harmless words come first and then "), await window.feed("the SEC")]
    out.append(await window.feed("RET plan follows here in detail"))
    out.append(await window.finish())
    joined = "".join(out)
    assert window.blocked
    assert "SEC" not in joined and "plan" not in joined
    assert joined.startswith("harmless")


async def test_unbroken_run_longer_than_max_pending_is_cut() -> None:
    async def allow(text: str) -> tuple[Verdict, str]:
        return Verdict.ALLOW, text

    window = HoldbackWindow(allow, 4, max_pending=32)
    out = await window.feed("x" * 40)
    assert out == "x" * 36
    assert await window.finish() == "xxxx"


# ---------------------------------------------------------------------------------------- tool calls


def test_tool_call_assembler_reassembles_per_index() -> None:
    asm = ToolCallAssembler()
    asm.add(
        [
            {
                "index": 0,
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ]
    )
    asm.add([{"index": 0, "function": {"arguments": '{"city": "Pa'}}])
    asm.add(
        [
            {
                "index": 1,
                "id": "call_b",
                "type": "function",
                "function": {"name": "send_", "arguments": '{"to"'},
            }
        ]
    )
    asm.add([{"index": 0, "function": {"arguments": 'ris"}'}}, {"index": 1, "function": {"name": "mail"}}])
    asm.add([{"index": 1, "function": {"arguments": ': "x"}'}}])
    calls = asm.calls()
    assert calls == [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {"id": "call_b", "type": "function", "function": {"name": "send_mail", "arguments": '{"to": "x"}'}},
    ]
    assert orjson.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}


# ---------------------------------------------------------------------------------------- guard


USAGE = {"id": "chatcmpl-1", "created": 1, "model": "m", "choices": [], "usage": {"prompt_tokens": 3}}


async def run_guard(guard: StreamGuard, chunks: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    out: list[bytes] = []
    for c in chunks:
        out.extend(await guard.feed(c))
    out.extend(await guard.finish())
    assert out[-1] == DONE and out.count(DONE) == 1
    return [decode_chunk(e) for e in parse_all(out)]


@pytest.mark.parametrize("include_usage", [True, False])
async def test_guard_usage_exactly_once_or_never(include_usage: bool) -> None:
    guard = StreamGuard(redact_emails, holdback=4, include_usage=include_usage)
    events = await run_guard(
        guard, [chunk("", role="assistant"), chunk("hi there"), chunk(finish="stop"), USAGE]
    )
    usage = [e for e in events if e and "usage" in e]
    if include_usage:
        assert len(usage) == 1 and usage[0]["choices"] == [] and usage[0]["usage"] == {"prompt_tokens": 3}
        assert events[-2] is usage[0]
    else:
        assert usage == []
    assert guard.usage == {"prompt_tokens": 3}
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e and e["choices"])
    assert text == "hi there"
    assert guard.finish_reasons() == ["stop"]


async def test_guard_block_sends_content_filter_and_stops() -> None:
    async def block(text: str) -> tuple[Verdict, str]:
        return (Verdict.BLOCK if "forbidden" in text else Verdict.ALLOW), text

    guard = StreamGuard(block, holdback=4, include_usage=True)
    events = await run_guard(
        guard,
        [chunk("fine words then "), chunk("forbidden stuff "), chunk("more"), chunk(finish="stop"), USAGE],
    )
    finishes = [e["choices"][0]["finish_reason"] for e in events if e and e["choices"]]
    assert finishes[-1] == "content_filter" and finishes.count("content_filter") == 1
    body = orjson.dumps(events).decode()
    assert "forbidden" not in body and "more" not in body
    assert guard.blocked and guard.blocked_by == "content"
    assert sum(1 for e in events if e and "usage" in e) == 1


async def test_guard_holds_tool_calls_until_complete_and_checked() -> None:
    checked: list[list[dict[str, Any]]] = []

    async def tools(calls: list[dict[str, Any]]) -> tuple[Verdict, list[dict[str, Any]]]:
        checked.append(calls)
        return Verdict.ALLOW, calls

    guard = StreamGuard(redact_emails, holdback=4, check_tools=tools)
    tc = [
        chunk(
            role="assistant",
            tool_calls=[{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}],
        ),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"q": '}}]),
    ]
    out: list[bytes] = []
    for c in tc:
        out.extend(await guard.feed(c))
    assert all(b"tool_calls" not in o for o in out)  # nothing of the call before it is complete
    out.extend(await guard.feed(chunk(tool_calls=[{"index": 0, "function": {"arguments": "1}"}}])))
    out.extend(await guard.feed(chunk(finish="tool_calls")))
    out.extend(await guard.finish())
    events = [decode_chunk(e) for e in parse_all(out)]
    calls = [
        e["choices"][0]["delta"]["tool_calls"]
        for e in events
        if e and e["choices"] and "tool_calls" in e["choices"][0]["delta"]
    ]
    assert calls == [
        [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"q": 1}'}}]
    ]
    assert checked and checked[0][0]["function"]["arguments"] == '{"q": 1}'


async def test_guard_blocks_tool_calls() -> None:
    async def tools(calls: list[dict[str, Any]]) -> tuple[Verdict, list[dict[str, Any]]]:
        return Verdict.BLOCK, calls

    guard = StreamGuard(redact_emails, check_tools=tools)
    events = await run_guard(
        guard,
        [
            chunk(tool_calls=[{"index": 0, "id": "c1", "function": {"name": "rm", "arguments": "{}"}}]),
            chunk(finish="tool_calls"),
        ],
    )
    assert b"rm" not in orjson.dumps(events)
    assert events[-2] is not None and events[-2]["choices"][0]["finish_reason"] == "content_filter"
    assert guard.blocked_by == "tool_calls"


def test_error_event_is_openai_shaped() -> None:
    (event,) = parse_all([error_event(UpstreamUnavailable("the upstream broke the connection"))])
    body = decode_chunk(event)
    assert body == {
        "error": {
            "message": "the upstream broke the connection",
            "type": "upstream_error",
            "param": None,
            "code": "upstream_unavailable",
        }
    }


def test_public_api_is_pinned() -> None:
    import gateway.streaming as streaming
    import gateway.upstream as upstream

    assert set(streaming.__all__) == {
        "DONE", "HoldbackWindow", "SSEEvent", "SSEParser", "StreamGuard", "TextCheck", "ToolCallAssembler",
        "ToolCheck", "content_chunk", "decode_chunk", "delivered_choice", "encode_sse", "error_event",
        "finish_chunk", "guard_batches", "guard_stream", "tool_call_deltas", "usage_chunk",
    }  # fmt: skip
    assert set(upstream.__all__) == {
        "LEAN_PROVIDERS",
        "Deployment",
        "Upstream",
        "UpstreamStream",
        "map_http_error",
    }
    for mod in (streaming, upstream):
        for name in mod.__all__:
            assert hasattr(mod, name), name


async def test_guard_stream_stops_early_after_a_block_and_keeps_usage() -> None:
    async def block(text: str) -> tuple[Verdict, str]:
        return (Verdict.BLOCK if "forbidden" in text else Verdict.ALLOW), text

    read: list[int] = []

    async def upstream(stall: bool) -> AsyncIterator[dict[str, Any]]:
        items = [chunk("ok words "), chunk("forbidden words here "), *[chunk("more ") for _ in range(5)]]
        items += [chunk(finish="stop"), USAGE]
        for i, c in enumerate(items):
            read.append(i)
            if stall and i == 3:
                await asyncio.sleep(30)
            yield c

    guard = StreamGuard(block, holdback=4, include_usage=True, min_release=1)
    out = [p async for p in guard_stream(upstream(False), guard)]
    assert sum(1 for e in _events(out) if e and "usage" in e) == 1  # drained for the usage numbers
    assert b"forbidden" not in b"".join(out)

    read.clear()
    guard = StreamGuard(block, holdback=4, include_usage=True, min_release=1)
    out = [p async for p in guard_stream(upstream(True), guard, drain_after_block_s=0.05)]
    assert out[-1] == DONE and max(read) == 3  # the stalled upstream was abandoned
    assert guard.blocked and guard.usage is None
    assert not any(e and "usage" in e for e in _events(out))


def _events(out: list[bytes]) -> list[dict[str, Any] | None]:
    return [decode_chunk(e) for e in parse_all(out)]
