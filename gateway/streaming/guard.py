"""The output guardrail for streamed completions.

* ``HoldbackWindow`` (``gateway.streaming.holdback``): releases streamed text only after it has
  been checked and is at least ``holdback`` characters behind the end, cut at whitespace, so that a
  match spanning chunks is still caught and nothing unchecked reaches the client.
* ``ToolCallAssembler``: reassembles tool-call deltas per index into whole calls.
* ``StreamGuard``: the whole output side of a streamed completion. It consumes upstream chunk dicts
  and yields the SSE bytes for the client: content through a ``HoldbackWindow`` per choice, tool
  calls held until complete and checked, the ``content_filter`` finish on a block, exactly one
  usage chunk when the client asked for it, and ``data: [DONE]``.

Nothing here does network I/O; the SSE bytes come from ``gateway.streaming.sse``; the chat service
drives the guard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.streaming.holdback import HoldbackWindow, TextCheck
from gateway.streaming.sse import DONE, base_chunk, content_chunk, encode_sse, finish_chunk, usage_chunk
from rollguard.errors import UpstreamError
from rollguard.types import Verdict

__all__ = [
    "HoldbackWindow",
    "StreamGuard",
    "TextCheck",
    "ToolCallAssembler",
    "ToolCheck",
    "guard_batches",
    "guard_stream",
    "tool_call_deltas",
]

# --------------------------------------------------------------------------------------------- tool calls

ToolCheck = Callable[[list[dict[str, Any]]], Awaitable[tuple[Verdict, list[dict[str, Any]]]]]
"""The output check on whole tool calls: ``calls -> (verdict, possibly rewritten calls)``. Calls are
OpenAI ``tool_calls`` entries: ``{"id", "type": "function", "function": {"name", "arguments"}}``."""


@dataclass(slots=True)
class _Call:
    index: int
    id: str = ""
    type: str = "function"
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Reassemble streamed ``delta.tool_calls`` fragments per ``index``.

    ``add(deltas)`` takes one chunk's ``delta["tool_calls"]`` list; ``calls()`` returns the whole
    calls in index order as OpenAI ``tool_calls`` entries
    ``{"id", "type": "function", "function": {"name", "arguments"}}`` (arguments are the
    concatenated JSON text, not parsed). A call is complete at the end of its choice
    (``finish_reason``); ``StreamGuard`` releases calls only then.
    """

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, _Call] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, deltas: list[Any]) -> None:
        for d in deltas:
            if not isinstance(d, Mapping):
                continue
            index = d.get("index")
            if not isinstance(index, int):
                index = len(self._calls) if d.get("id") else max(self._calls, default=0)
            call = self._calls.get(index)
            if call is None:
                call = self._calls[index] = _Call(index)
            if d.get("id"):
                call.id = str(d["id"])
            if d.get("type"):
                call.type = str(d["type"])
            fn = d.get("function")
            if isinstance(fn, Mapping):
                name = fn.get("name")
                if name and name != call.name:
                    # Most upstreams send the name once; some repeat it, a few send it in pieces.
                    call.name += str(name)
                if isinstance(fn.get("arguments"), str):
                    call.arguments.append(fn["arguments"])

    def calls(self) -> list[dict[str, Any]]:
        """The assembled calls, in index order."""
        return [
            {
                "id": c.id,
                "type": c.type,
                "function": {"name": c.name, "arguments": "".join(c.arguments)},
            }
            for _, c in sorted(self._calls.items())
        ]


def tool_call_deltas(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whole calls as one ``delta.tool_calls`` list (each with its ``index``): how checked calls are
    released to the client in a single chunk (OpenAI clients accumulate per index, so one complete
    fragment per call is valid)."""
    return [{"index": i, **call} for i, call in enumerate(calls)]


# --------------------------------------------------------------------------------------------- the guard


@dataclass(slots=True)
class _Choice:
    window: HoldbackWindow
    tools: ToolCallAssembler = field(default_factory=ToolCallAssembler)
    role_sent: bool = False
    finished: bool = False
    finish_reason: str | None = None


async def _allow_tools(calls: list[dict[str, Any]]) -> tuple[Verdict, list[dict[str, Any]]]:
    return Verdict.ALLOW, calls


class StreamGuard:
    """The output side of one streamed chat completion.

    ``await feed(chunk)`` takes one upstream chunk dict and returns the SSE byte strings to write to
    the client (possibly none); ``await finish()`` returns the closing bytes (held text, finish
    chunks, the usage chunk, ``data: [DONE]``). ``guard_batches`` / ``guard_stream`` drive both
    over an iterator.

    Rules:

    * content goes through a ``HoldbackWindow(check, holdback, min_release=min_release)`` per choice
      index (``min_release`` 32 characters by default: about half the checks of 1 on a 16-chunk,
      512-character reply, measured with a 128-character hold-back); other text fields
      of a delta (``reasoning_content``, ``refusal``, ...) are dropped: they would be unchecked;
    * ``feed(chunk, more=True)`` (more upstream chunks are already read, no network wait): the
      content is only appended to its window, unchecked and unreleased, and checked with the next
      ``feed`` without ``more`` (every choice with such text then), at its choice's finish or when
      ``batch_chars`` unreleased characters of a choice are waiting: a burst is checked once;
    * ``delta.tool_calls`` are reassembled and released only when the choice finishes, after
      ``check_tools`` (one chunk, one complete fragment per call);
    * a block (text or tools) sends ``finish_reason: "content_filter"`` for that choice at once and
      nothing more of it; ``blocked`` becomes True and the caller may stop early;
    * ``usage``: the upstream is always asked for usage (the gateway records it: ``usage``); when
      ``include_usage`` (the client's ``stream_options.include_usage``) exactly one chunk with
      ``"choices": []`` and the upstream's numbers goes out just before ``[DONE]``; otherwise none.
      If the upstream reported no usage, no usage chunk is sent.
    """

    def __init__(
        self,
        check: TextCheck,
        *,
        holdback: int = 128,
        include_usage: bool = False,
        check_tools: ToolCheck | None = None,
        min_release: int = 32,
        batch_chars: int = 2048,
    ) -> None:
        self._check = check
        self.batch_chars = batch_chars
        """At most this many unreleased characters of a choice wait for a batched check."""
        self._deferred: set[int] = set()
        """Choices with text appended by ``feed(..., more=True)`` and not checked yet."""
        self._check_tools = check_tools or _allow_tools
        self.holdback = holdback
        self.min_release = min_release
        self.include_usage = include_usage
        self._choices: dict[int, _Choice] = {}
        self._template: dict[str, Any] = {"object": "chat.completion.chunk"}
        self.usage: dict[str, Any] | None = None
        self.blocked = False
        self.blocked_by: str | None = None
        """``"content"`` or ``"tool_calls"`` when blocked."""
        self._closed = False

    # -- results for the audit record
    def completion(self, index: int = 0) -> str:
        """The released (checked, redacted) text of choice ``index``."""
        ch = self._choices.get(index)
        return ch.window.released if ch else ""

    def tool_calls(self, index: int = 0) -> list[dict[str, Any]]:
        ch = self._choices.get(index)
        return ch.tools.calls() if ch else []

    def indexes(self) -> list[int]:
        """The choice indexes seen, in order."""
        return sorted(self._choices)

    def finish_reasons(self) -> list[str]:
        return [c.finish_reason for _, c in sorted(self._choices.items()) if c.finish_reason]

    @property
    def all_finished(self) -> bool:
        """Every choice seen so far has finished (its finish chunk was sent)."""
        return bool(self._choices) and all(c.finished for c in self._choices.values())

    @property
    def verdict(self) -> Verdict:
        """Most severe verdict of any text check (tools blocks show as ``blocked``)."""
        worst = Verdict.ALLOW
        for c in self._choices.values():
            if c.window.verdict.severity > worst.severity:
                worst = c.window.verdict
        return worst

    def _choice(self, index: int) -> _Choice:
        ch = self._choices.get(index)
        if ch is None:
            window = HoldbackWindow(self._check, self.holdback, min_release=self.min_release)
            ch = self._choices[index] = _Choice(window)
        return ch

    async def feed(self, chunk: Mapping[str, Any], *, more: bool = False) -> list[bytes]:
        """Process one upstream chunk; return the bytes to send now. ``more``: further chunks are
        already waiting (class docstring): its text is checked with theirs."""
        out: list[bytes] = []
        if chunk.get("id") is not None:
            self._template = base_chunk(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self.usage = dict(usage)
        choices = chunk.get("choices")
        for c in choices if isinstance(choices, list) else ():
            if isinstance(c, Mapping):
                index = c.get("index", 0)
                await self._feed_choice(index if isinstance(index, int) else 0, c, more, out)
        if not more and self._deferred:
            await self._flush(out)
        return out

    async def _feed_choice(self, index: int, c: Mapping[str, Any], more: bool, out: list[bytes]) -> None:
        ch = self._choice(index)
        if ch.finished:
            return
        delta = c.get("delta")
        if isinstance(delta, Mapping):
            if not ch.role_sent and delta.get("role"):
                ch.role_sent = True
                role = {"role": delta["role"], "content": ""}
                out.append(encode_sse(content_chunk(self._template, index, role)))
            tcs = delta.get("tool_calls")
            if isinstance(tcs, list):
                ch.tools.add(tcs)
            text = delta.get("content")
            if isinstance(text, str) and text:
                if more and len(ch.window.pending) + len(text) <= self.batch_chars:
                    ch.window.append(text)
                    self._deferred.add(index)
                else:
                    self._deferred.discard(index)
                    self._released(index, ch, await ch.window.feed(text), out)
                    if ch.finished:
                        return
        reason = c.get("finish_reason")
        if reason:
            out.extend(await self._finish_choice(index, ch, str(reason)))

    def _released(self, index: int, ch: _Choice, text: str, out: list[bytes]) -> None:
        """``text`` released by ``ch``'s window as a content chunk, or its block."""
        if ch.window.blocked:
            out.append(self._block(index, ch, "content"))
        elif text:
            out.append(encode_sse(content_chunk(self._template, index, {"content": text})))

    async def flush(self) -> list[bytes]:
        """Check the text of batched ``feed`` calls now (the upstream failed before the burst's
        last chunk): the bytes it releases."""
        out: list[bytes] = []
        await self._flush(out)
        return out

    async def _flush(self, out: list[bytes]) -> None:
        """Check the text that batched ``feed`` calls appended (every choice that has some)."""
        deferred, self._deferred = sorted(self._deferred), set()
        for index in deferred:
            ch = self._choices[index]
            if not ch.finished:
                self._released(index, ch, await ch.window.feed(""), out)

    def _block(self, index: int, ch: _Choice, what: str) -> bytes:
        ch.finished = True
        ch.finish_reason = "content_filter"
        self.blocked = True
        self.blocked_by = self.blocked_by or what
        return encode_sse(finish_chunk(self._template, index, "content_filter"))

    async def _finish_choice(self, index: int, ch: _Choice, reason: str) -> list[bytes]:
        out: list[bytes] = []
        self._deferred.discard(index)
        rest = await ch.window.finish()
        if ch.window.blocked:
            return [self._block(index, ch, "content")]
        if rest:
            out.append(encode_sse(content_chunk(self._template, index, {"content": rest})))
        if ch.tools:
            verdict, calls = await self._check_tools(ch.tools.calls())
            if verdict.is_block():
                return [*out, self._block(index, ch, "tool_calls")]
            out.append(
                encode_sse(content_chunk(self._template, index, {"tool_calls": tool_call_deltas(calls)}))
            )
        ch.finished = True
        ch.finish_reason = reason
        out.append(encode_sse(finish_chunk(self._template, index, reason)))
        return out

    async def finish(self) -> list[bytes]:
        """End of the upstream stream (after ``[DONE]`` or end of bytes): release what is held for
        unfinished choices (finish reason ``stop``), the usage chunk if asked, then ``[DONE]``."""
        if self._closed:
            return []
        self._closed = True
        out: list[bytes] = []
        for index, ch in sorted(self._choices.items()):
            if not ch.finished:
                out.extend(await self._finish_choice(index, ch, "tool_calls" if ch.tools else "stop"))
        if self.include_usage and self.usage is not None:
            out.append(encode_sse(usage_chunk(self._template, self.usage)))
        out.append(DONE)
        return out


async def guard_batches(
    chunks: AsyncIterator[Mapping[str, Any]], guard: StreamGuard, *, drain_after_block_s: float = 2.0
) -> AsyncIterator[list[bytes]]:
    """Drive ``guard`` over upstream ``chunks``: yields the client's SSE events (one ``bytes`` each)
    in batches, one batch per burst of upstream chunks, ending with ``[DONE]``. Upstream errors
    raised by ``chunks`` propagate (the caller ends a stream that already started with
    ``error_event``).

    Bursts: when ``chunks`` has ``ready()`` (the lean transport's ``UpstreamStream``: True when the
    next chunk is already read) each chunk is fed with ``more=ready()``, so the chunks of one
    network read are checked together and their events leave in one batch (one write). The first
    event (the role chunk) leaves at once, so the time to first byte does not wait for a burst.
    Without ``ready()`` every chunk is checked and sent on its own.

    Once every choice has finished and one was blocked, the ``content_filter`` finish is already
    out; the upstream is then read on for at most ``drain_after_block_s`` seconds, sending nothing,
    only to get its usage numbers (for the record and the client's usage chunk); after that, or on
    an upstream error, it is abandoned (the caller's ``aclose`` closes the connection) and the
    stream ends, with a usage chunk only if the numbers arrived."""
    ready = getattr(chunks, "ready", None)
    it = chunks.__aiter__()
    held: list[bytes] = []
    sent = False
    try:
        async for chunk in it:
            more = bool(ready()) if ready is not None else False
            held.extend(await guard.feed(chunk, more=more))
            if guard.blocked and guard.all_finished:
                break
            if held and (not more or not sent):
                sent = True
                yield held
                held = []
        else:
            yield [*held, *await guard.finish()]
            return
    except UpstreamError:
        # what the burst before the failure released goes out first, as it would have chunk by chunk
        held.extend(await guard.flush())
        if held:
            yield held
        raise
    if held:
        yield held
    with contextlib.suppress(TimeoutError, UpstreamError):
        async with asyncio.timeout(drain_after_block_s):
            async for chunk in it:
                await guard.feed(chunk)  # every choice is finished: only ``usage`` is taken
    yield await guard.finish()


async def guard_stream(
    chunks: AsyncIterator[Mapping[str, Any]], guard: StreamGuard, *, drain_after_block_s: float = 2.0
) -> AsyncIterator[bytes]:
    """``guard_batches`` one SSE event at a time."""
    async for batch in guard_batches(chunks, guard, drain_after_block_s=drain_after_block_s):
        for piece in batch:
            yield piece
