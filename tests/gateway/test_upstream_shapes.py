"""One boundary for upstream reply shapes (issue 10, fault 3): a reply that is not a chat
completion (``choices: [null]``, ``choices: "x"``, ``message: "str"``, missing or mistyped fields;
stream chunks too) is 502 ``upstream_invalid_response``, retried and fallen back like other
upstream faults, and recorded with its interaction id. Before, a non-streamed one gave 500
``internal_error`` with no record, no retry and no fallback."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.upstream.shapes import shape_problem
from rollguard.errors import UpstreamInvalidResponse
from rollguard.testing import InMemoryTransport, Stream, chunks_of, completion
from tests.gateway.test_service import META, ask, service


def _with(**fields: Any) -> dict[str, Any]:
    return {**completion("fine"), **fields}


def _choice(**fields: Any) -> dict[str, Any]:
    return _with(choices=[{"index": 0, "finish_reason": "stop", **fields}])


BAD_COMPLETIONS = {
    "choices [null]": _with(choices=[None]),
    "choices a string": _with(choices="x"),
    "choices missing": {k: v for k, v in completion().items() if k != "choices"},
    "message a string": _choice(message="str"),
    "message missing": _choice(),
    "content a number": _choice(message={"role": "assistant", "content": 42}),
    "content parts not objects": _choice(message={"role": "assistant", "content": ["a"]}),
    "tool_calls an object": _choice(message={"role": "assistant", "content": None, "tool_calls": {}}),
    "tool_calls [null]": _choice(message={"role": "assistant", "content": None, "tool_calls": [None]}),
    "arguments an object": _choice(
        message={
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}],
        }
    ),
    "finish_reason a number": {**_choice(message={"role": "assistant", "content": "x"}), "usage": None}
    | {"choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": 1}]},
    "index a string": _with(choices=[{"index": "0", "message": {"content": "x"}}]),
    "usage a list": _with(usage=[1, 2]),
    "a list, not an object": [completion()],
}


@pytest.mark.parametrize("name", list(BAD_COMPLETIONS))
def test_every_bad_shape_is_named_by_path_never_by_value(name: str) -> None:
    problem = shape_problem(BAD_COMPLETIONS[name], stream=False)
    assert problem is not None
    assert "fine" not in problem and "str" not in problem.replace("string", "")


def test_valid_replies_pass() -> None:
    assert shape_problem(completion("hi"), stream=False) is None
    assert shape_problem(completion(None, tool_calls=[{"id": "c", "type": "function"}]), stream=False) is None
    assert shape_problem(_choice(message={"content": [{"type": "text", "text": "x"}]}), stream=False) is None
    for chunk in chunks_of(completion("hello there")):
        assert shape_problem(chunk, stream=True) is None
    assert shape_problem({"object": "keep-alive"}, stream=True) is None  # no choices: nothing to read


@pytest.mark.parametrize("name", [n for n in BAD_COMPLETIONS if isinstance(BAD_COMPLETIONS[n], dict)])
async def test_a_bad_completion_is_a_recorded_502_after_retries(name: str) -> None:
    transport = InMemoryTransport(replies=[BAD_COMPLETIONS[name]])
    svc, capture, _ = service(transport, router_settings={"num_retries": 2, "retry_after": 0})
    result = await svc.chat_completion(ask("hi"), META)
    assert isinstance(result.error, UpstreamInvalidResponse)
    assert result.error.status == 502 and result.error.code == "upstream_invalid_response"
    assert result.error_fields["interaction_id"] == result.interaction.id
    assert len(transport.calls) == 3  # retried like any upstream fault
    assert result.after is not None
    await result.after()
    (rec,) = capture.interactions
    assert rec.id == result.interaction.id and rec.status == 502
    assert rec.metadata["outcome"] == "upstream_error"


async def test_a_bad_completion_falls_back_to_the_next_alias() -> None:
    def answer(call: Any) -> Any:
        return completion("from the fallback") if call.alias == "demo-b" else _with(choices=[None])

    transport = InMemoryTransport(answer)
    svc, _, _ = service(
        transport, router_settings={"num_retries": 0, "fallbacks": [{"demo": ["demo-b"]}], "retry_after": 0}
    )
    result = await svc.chat_completion(ask("hi"), META)
    assert result.error is None and result.completion is not None
    assert result.completion["choices"][0]["message"]["content"] == "from the fallback"
    assert [c.alias for c in transport.calls] == ["demo", "demo-b"]


async def test_a_bad_first_stream_chunk_is_a_502_before_any_byte() -> None:
    bad = Stream([{"object": "chat.completion.chunk", "choices": "x"}])
    transport = InMemoryTransport(replies=[bad])
    svc, _, _ = service(transport, router_settings={"num_retries": 1, "retry_after": 0})
    result = await svc.chat_completion(ask("hi", stream=True), META)
    assert isinstance(result.error, UpstreamInvalidResponse) and result.stream is None
    assert len(transport.calls) == 2


async def test_a_bad_chunk_mid_stream_ends_the_stream_with_an_error_and_a_record() -> None:
    good = chunks_of(completion("hello there, friend"))
    bad = Stream([*good[:2], {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": "str"}]}])
    svc, capture, _ = service(InMemoryTransport(replies=[bad]))
    result = await svc.chat_completion(ask("hi", stream=True), META)
    assert result.stream is not None
    body = b"".join([piece async for piece in result.stream])
    assert body.endswith(b'"code":"upstream_invalid_response"}}\n\n')
    (rec,) = capture.interactions
    assert rec.id == result.interaction.id and rec.metadata["outcome"] == "upstream_error"
    assert rec.status == 502 and rec.error_code == "upstream_invalid_response"
