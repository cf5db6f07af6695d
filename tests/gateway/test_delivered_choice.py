"""``delivered_choice``: what a client received of one choice, read back from the SSE bytes."""

from __future__ import annotations

from gateway.streaming import DONE, content_chunk, delivered_choice, encode_sse, finish_chunk

T = {"id": "c1", "created": 1, "model": "m"}


def test_text_calls_and_finish_of_one_choice_only() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    pieces = [
        encode_sse(content_chunk(T, 0, {"role": "assistant", "content": ""})),
        encode_sse(content_chunk(T, 0, {"content": "Hello "})),
        encode_sse(content_chunk(T, 1, {"content": "other choice"})),
        encode_sse(content_chunk(T, 0, {"content": "world"})),
        encode_sse(content_chunk(T, 0, {"tool_calls": [{"index": 0, **call}]})),
        encode_sse(finish_chunk(T, 0, "tool_calls")),
        DONE,
    ]
    assert delivered_choice(pieces, 0) == ("Hello world", [call], "tool_calls")
    assert delivered_choice(pieces, 1) == ("other choice", [], None)


def test_cut_before_the_finish_chunk_has_no_finish_reason() -> None:
    pieces = [encode_sse(content_chunk(T, 0, {"content": "Hello"}))]
    assert delivered_choice(pieces, 0) == ("Hello", [], None)
    assert delivered_choice([], 0) == ("", [], None)
