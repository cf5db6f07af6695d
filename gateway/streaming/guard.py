"""The output guardrail for streamed completions.

* ``HoldbackWindow``: releases streamed text only after it has been checked and is at least
  ``holdback`` characters behind the end, cut at whitespace, so that a match spanning chunks is
  still caught and nothing unchecked reaches the client.
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

from gateway.streaming.sse import DONE, base_chunk, content_chunk, encode_sse, finish_chunk, usage_chunk
from rollguard.errors import UpstreamError
from rollguard.types import Verdict

__all__ = [
    "HoldbackWindow",
    "StreamGuard",
    "TextCheck",
    "ToolCallAssembler",
    "ToolCheck",
    "guard_stream",
    "tool_call_deltas",
]

# --------------------------------------------------------------------------------------------- hold-back

TextCheck = Callable[[str], Awaitable[tuple[Verdict, str]]]
"""The output check on a text window: ``window_text -> (verdict, rewritten window_text)``. The
window is already-released context followed by unreleased text. Return the text unchanged unless
redacting; must not raise (the gateway's wrapper applies the policies' ``on_error``)."""

ToolCheck = Callable[[list[dict[str, Any]]], Awaitable[tuple[Verdict, list[dict[str, Any]]]]]
"""The output check on whole tool calls: ``calls -> (verdict, possibly rewritten calls)``. Calls are
OpenAI ``tool_calls`` entries: ``{"id", "type": "function", "function": {"name", "arguments"}}``."""


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _common_suffix(a: str, b: str, limit: int) -> int:
    i = 0
    la, lb = len(a), len(b)
    while i < limit and a[la - 1 - i] == b[lb - 1 - i]:
        i += 1
    return i


def _last_break(text: str, end: int, start: int = 0) -> int:
    """Index just after the last whitespace in ``text[start:end]``; ``start`` when there is none."""
    for i in range(end - 1, start - 1, -1):
        if text[i].isspace():
            return i + 1
    return start


class HoldbackWindow:
    """Hold back streamed text until it is checked and safely behind the end.

    ``feed(delta)`` appends a content delta and returns the text that may be released now ("" if
    none); ``finish()`` checks and returns the rest. Rules (the invariant: nothing unchecked and
    nothing within ``holdback`` characters of the end is released, except at ``finish``):

    1. A release point is the last whitespace at least ``holdback`` characters before the end of the
       text received so far (so no word, hence no e-mail/URL/key, is split at the release point;
       entities containing spaces, like phone numbers and names, are protected by ``holdback``).
       A run of more than ``max_pending`` characters without whitespace is cut at the limit.
    2. The check runs only when a release point exists that frees at least ``min_release``
       characters (and at ``finish``), on ``context + unreleased`` where ``context`` is the last
       ``context_chars`` released characters (default ``holdback``).
    3. If the check rewrites (redacts) the text, the rewritten text is released. The changed region
       is located by common prefix/suffix; when it reaches past the release point the release point
       moves back to the whitespace before the change, and the unreleased tail is kept *raw* and
       checked again with the text that follows (so an entity whose first half already looked
       complete is judged whole).
    4. ``Verdict.BLOCK`` stops all release for good (``blocked`` becomes True).

    Attributes: ``verdict`` (most severe seen), ``checks`` (calls of ``check``), ``released`` (all
    released text, joined, i.e. the redacted completion), ``boundary_rewrites`` (times a rewrite
    touched already-released context: then the redacted remainder of the entity is sent, but its
    released start could not be recalled; raise ``holdback`` if this is non-zero).
    """

    def __init__(
        self,
        check: TextCheck,
        holdback: int = 128,
        *,
        context_chars: int | None = None,
        min_release: int = 1,
        max_pending: int | None = None,
    ) -> None:
        if holdback < 0 or min_release < 1:
            raise ValueError("holdback must be >= 0 and min_release >= 1")
        self._check = check
        self.holdback = holdback
        self.context_chars = holdback if context_chars is None else context_chars
        self.min_release = min_release
        self.max_pending = max_pending if max_pending is not None else max(4096, 8 * holdback)
        self._pending = ""
        self._context = ""
        self._released: list[str] = []
        self.blocked = False
        self.verdict = Verdict.ALLOW
        self.checks = 0
        self.boundary_rewrites = 0

    @property
    def released(self) -> str:
        return "".join(self._released)

    @property
    def pending(self) -> str:
        """Received but not yet released text (raw)."""
        return self._pending

    async def feed(self, delta: str) -> str:
        """Append ``delta``; return the text released now ("" when none or when blocked)."""
        if self.blocked:
            return ""
        if delta:
            self._pending += delta
        limit = len(self._pending) - self.holdback
        if limit < self.min_release:
            return ""
        cut = _last_break(self._pending, limit)
        if cut == 0 and len(self._pending) > self.max_pending:
            cut = limit
        if cut < self.min_release:
            return ""
        return await self._run(cut, final=False)

    async def finish(self) -> str:
        """End of the stream: check everything unreleased and return it ("" when blocked)."""
        if self.blocked or not self._pending:
            return ""
        return await self._run(len(self._pending), final=True)

    async def _run(self, cut: int, *, final: bool) -> str:
        context, pending = self._context, self._pending
        window = context + pending
        verdict, rewritten = await self._check(window)
        self.checks += 1
        if verdict.severity > self.verdict.severity:
            self.verdict = verdict
        if verdict.is_block():
            self.blocked = True
            return ""
        if rewritten == window:
            out = pending[:cut]
            self._pending = pending[cut:]
            return self._emit(out)
        nctx = len(context)
        p = _common_prefix(window, rewritten)
        s = _common_suffix(window, rewritten, min(len(window), len(rewritten)) - p)
        change_end = len(window) - s  # end (exclusive) of the changed region in the raw window
        start = nctx
        if p < nctx:
            # The rewrite reaches into text already sent: resend the rewritten remainder from there.
            self.boundary_rewrites += 1
            start = p
        if final:
            out = rewritten[start:]
            self._pending = ""
            return self._emit(out)
        cut_w = nctx + cut
        if change_end <= cut_w:
            out = rewritten[start : len(rewritten) - (len(window) - cut_w)]
            self._pending = pending[cut:]
            return self._emit(out)
        if start < nctx:
            return ""  # the change straddles both ends: hold everything until more text or the end
        # The change reaches past the release point: release only the unchanged text before it.
        safe = _last_break(window, p, nctx) - nctx
        if safe < self.min_release:
            return ""
        out = pending[:safe]
        self._pending = pending[safe:]
        return self._emit(out)

    def _emit(self, out: str) -> str:
        if out:
            self._released.append(out)
            if self.context_chars:
                self._context = (self._context + out)[-self.context_chars :]
        return out


# --------------------------------------------------------------------------------------------- tool calls


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
    chunks, the usage chunk, ``data: [DONE]``). ``guard_stream`` drives both over an iterator.

    Rules:

    * content goes through a ``HoldbackWindow(check, holdback, min_release=min_release)`` per choice
      index (``min_release`` 32 characters by default: about half the checks of 1 on a 16-chunk,
      512-character reply, measured with a 128-character hold-back); other text fields
      of a delta (``reasoning_content``, ``refusal``, ...) are dropped: they would be unchecked;
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
    ) -> None:
        self._check = check
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

    async def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        """Process one upstream chunk; return the bytes to send now."""
        out: list[bytes] = []
        if chunk.get("id") is not None:
            self._template = base_chunk(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self.usage = dict(usage)
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return out
        for c in choices:
            if not isinstance(c, Mapping):
                continue
            index = c.get("index", 0)
            if not isinstance(index, int):
                index = 0
            ch = self._choice(index)
            if ch.finished:
                continue
            delta = c.get("delta")
            if isinstance(delta, Mapping):
                if not ch.role_sent and delta.get("role"):
                    ch.role_sent = True
                    out.append(
                        encode_sse(
                            content_chunk(self._template, index, {"role": delta["role"], "content": ""})
                        )
                    )
                tcs = delta.get("tool_calls")
                if isinstance(tcs, list):
                    ch.tools.add(tcs)
                text = delta.get("content")
                if isinstance(text, str) and text:
                    released = await ch.window.feed(text)
                    if ch.window.blocked:
                        out.append(self._block(index, ch, "content"))
                        continue
                    if released:
                        out.append(encode_sse(content_chunk(self._template, index, {"content": released})))
            reason = c.get("finish_reason")
            if reason:
                out.extend(await self._finish_choice(index, ch, str(reason)))
        return out

    def _block(self, index: int, ch: _Choice, what: str) -> bytes:
        ch.finished = True
        ch.finish_reason = "content_filter"
        self.blocked = True
        self.blocked_by = self.blocked_by or what
        return encode_sse(finish_chunk(self._template, index, "content_filter"))

    async def _finish_choice(self, index: int, ch: _Choice, reason: str) -> list[bytes]:
        out: list[bytes] = []
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


async def guard_stream(
    chunks: AsyncIterator[Mapping[str, Any]], guard: StreamGuard, *, drain_after_block_s: float = 2.0
) -> AsyncIterator[bytes]:
    """Drive ``guard`` over upstream ``chunks``: yields the client's SSE bytes, ending with
    ``[DONE]``. Upstream errors raised by ``chunks`` propagate (the caller ends a stream that already
    started with ``error_event``).

    Once every choice has finished and one was blocked, the ``content_filter`` finish is already
    out; the upstream is then read on for at most ``drain_after_block_s`` seconds, sending nothing,
    only to get its usage numbers (for the record and the client's usage chunk); after that, or on
    an upstream error, it is abandoned (the caller's ``aclose`` closes the connection) and the
    stream ends, with a usage chunk only if the numbers arrived."""
    it = chunks.__aiter__()
    async for chunk in it:
        for piece in await guard.feed(chunk):
            yield piece
        if guard.blocked and guard.all_finished:
            break
    else:
        for piece in await guard.finish():
            yield piece
        return
    with contextlib.suppress(TimeoutError, UpstreamError):
        async with asyncio.timeout(drain_after_block_s):
            async for chunk in it:
                await guard.feed(chunk)  # every choice is finished: only ``usage`` is taken
    for piece in await guard.finish():
        yield piece
