"""In-memory fakes of the gateway's I/O ports, for unit tests (yours and ours): a scripted
upstream (``InMemoryTransport``, in the spirit of httpx's ``MockTransport``), a decision capture
(``DecisionCapture``, like OpenTelemetry's ``InMemorySpanExporter``) and static flags
(``StaticFlags``). Integration tests keep the real parts (an HTTP upstream, Redis, Unleash).

They match the gateway's ports structurally (``typing.Protocol``), so this module imports nothing
from ``gateway``: ``Upstream(settings, transport=InMemoryTransport(...))``,
``ChatService(..., flags=StaticFlags(...), audit=DecisionCapture(), ...)``.

Example::

    transport = InMemoryTransport(replies=[completion("Hello!"), RateLimited("slow down")])
    upstream = Upstream(settings, transport=transport)
    assert (await upstream.complete("demo", body))["choices"][0]["message"]["content"] == "Hello!"
    assert transport.calls[0].model == "demo-model"
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rollguard.errors import UpstreamError
from rollguard.types import Decision, FlagSnapshot, Interaction, Stage, Verdict

__all__ = [
    "DecisionCapture",
    "InMemoryTransport",
    "Reply",
    "ScriptedCall",
    "StaticFlags",
    "Stream",
    "chunks_of",
    "completion",
]


# ---------------------------------------------------------------------------------------- upstream


class _Deployment(Protocol):
    """What the fake reads of a deployment (``gateway.upstream.Deployment`` has it)."""

    @property
    def alias(self) -> str: ...

    @property
    def model(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Stream:
    """A scripted stream: ``chunks`` in order; an ``UpstreamError`` among them is raised at that
    point (after the chunks before it were read); ``delay_s`` seconds before each chunk."""

    chunks: Sequence[Mapping[str, Any] | UpstreamError]
    delay_s: float = 0.0


Reply = Mapping[str, Any] | Stream | UpstreamError
"""One scripted answer: a ``chat.completion`` dict (streamed as ``chunks_of`` it when a stream
is asked for), a ``Stream``, or an ``UpstreamError`` raised for the attempt (the router applies
its retry and fallback policy to it, as to a real upstream's)."""


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    """One attempt the transport received: deployment alias, the model name sent upstream, a
    deep copy of the body, whether it was a stream, and the timeout (s) it was given."""

    alias: str
    model: str
    body: dict[str, Any]
    stream: bool
    timeout_s: float


def completion(
    content: str | None = "Hello!",
    *,
    model: str = "scripted",
    finish_reason: str = "stop",
    tool_calls: list[dict[str, Any]] | None = None,
    usage: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` dict with one choice. ``usage`` defaults to 3 prompt and 2
    completion tokens."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    use = (
        dict(usage) if usage is not None else {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    )
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": use,
    }


def chunks_of(resp: Mapping[str, Any], *, piece_chars: int = 8) -> list[dict[str, Any]]:
    """``resp`` (a ``chat.completion``) as ``chat.completion.chunk`` dicts: a role chunk, the
    content in pieces of ``piece_chars`` characters, tool calls in one chunk, a finish chunk
    per choice, then a usage chunk (``"choices": []``) when ``resp`` has usage."""
    base = {k: resp[k] for k in ("id", "created", "model") if k in resp}
    base["object"] = "chat.completion.chunk"
    out: list[dict[str, Any]] = []
    for choice in resp.get("choices") or ():
        i, msg = choice.get("index", 0), choice.get("message") or {}
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        text = msg.get("content") or ""
        deltas += [{"content": text[k : k + piece_chars]} for k in range(0, len(text), piece_chars)]
        if msg.get("tool_calls"):
            deltas.append({"tool_calls": [{"index": n, **c} for n, c in enumerate(msg["tool_calls"])]})
        out += [{**base, "choices": [{"index": i, "delta": d, "finish_reason": None}]} for d in deltas]
        out.append(
            {**base, "choices": [{"index": i, "delta": {}, "finish_reason": choice.get("finish_reason")}]}
        )
    if resp.get("usage"):
        out.append({**base, "choices": [], "usage": dict(resp["usage"])})
    return out


class InMemoryTransport:
    """A scripted upstream behind the gateway's ``Transport`` protocol; no sockets.

    Either ``handler(call) -> Reply`` answers each attempt (like httpx's ``MockTransport``), or
    ``replies`` are used one per attempt, in order (the last one repeats when they run out).
    Every attempt is appended to ``calls``. Raises ``AssertionError`` when neither is given.
    """

    def __init__(
        self, handler: Callable[[ScriptedCall], Reply] | None = None, *, replies: Iterable[Reply] = ()
    ) -> None:
        self._handler = handler
        self._replies = list(replies)
        if handler is None and not self._replies:
            raise AssertionError("InMemoryTransport needs a handler or at least one reply")
        self._next = itertools.count()
        self.calls: list[ScriptedCall] = []
        self.closed = False

    def _answer(self, dep: _Deployment, body: Mapping[str, Any], stream: bool, seconds: float) -> Reply:
        call = ScriptedCall(dep.alias, dep.model, copy.deepcopy(dict(body)), stream, seconds)
        self.calls.append(call)
        if self._handler is not None:
            return self._handler(call)
        return self._replies[min(next(self._next), len(self._replies) - 1)]

    async def complete(self, dep: _Deployment, body: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        """The scripted completion (a deep copy); raises a scripted ``UpstreamError``."""
        reply = self._answer(dep, body, False, seconds)
        if isinstance(reply, UpstreamError):
            raise reply
        if isinstance(reply, Stream):
            raise AssertionError("a Stream was scripted for a non-streamed call")
        return copy.deepcopy(dict(reply))

    async def open_stream(
        self, dep: _Deployment, body: Mapping[str, Any], read_timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        """The scripted chunks; raises a scripted ``UpstreamError`` at open or mid-stream."""
        reply = self._answer(dep, body, True, read_timeout)
        if isinstance(reply, UpstreamError):
            raise reply
        script = reply if isinstance(reply, Stream) else Stream(chunks_of(reply))
        return self._chunks(script)

    @staticmethod
    async def _chunks(script: Stream) -> AsyncIterator[dict[str, Any]]:
        for item in script.chunks:
            if script.delay_s:
                await asyncio.sleep(script.delay_s)
            if isinstance(item, UpstreamError):
                raise item
            yield copy.deepcopy(dict(item))

    async def aclose(self) -> None:
        self.closed = True


# ---------------------------------------------------------------------------------------- decisions


class _NoPrivacy:
    def eligible_roles(self, policy: object) -> frozenset[str] | None:
        return None


@dataclass
class DecisionCapture:
    """The audit port, in memory: keeps every finished ``Interaction`` as recorded (raw, not
    redacted: for assertions only). ``decisions`` flattens their policy decisions."""

    interactions: list[Interaction] = field(default_factory=list)
    redactor: Any = field(default_factory=_NoPrivacy)
    """No privacy coverage: the capture never redacts."""

    def record(self, interaction: Interaction, coverage: object = None) -> None:
        self.interactions.append(interaction)

    @property
    def decisions(self) -> list[Decision]:
        return [d for i in self.interactions for d in i.decisions]

    def verdicts(self, policy: str, stage: Stage | None = None) -> list[Verdict]:
        """The verdicts ``policy`` reached, in order (only at ``stage`` when given)."""
        return [
            d.verdict for d in self.decisions if d.policy == policy and (stage is None or d.stage is stage)
        ]

    def clear(self) -> None:
        self.interactions.clear()


# ---------------------------------------------------------------------------------------- flags


class StaticFlags:
    """The flag port with fixed answers: ``enabled`` per flag name (an unlisted flag is
    ``default``), ``variants`` / ``payloads`` per rollout flag. Every context it is asked with is
    kept in ``contexts`` (the gateway's ``FlagContext``)."""

    def __init__(
        self,
        enabled: Mapping[str, bool] | None = None,
        *,
        variants: Mapping[str, str] | None = None,
        payloads: Mapping[str, str] | None = None,
    ) -> None:
        self.enabled = dict(enabled or {})
        self.variants = dict(variants or {})
        self.payloads = dict(payloads or {})
        self.contexts: list[Any] = []

    def evaluate(
        self, names: Iterable[str], context: Any, *, variant_flags: Iterable[str] = (), default: bool = True
    ) -> FlagSnapshot:
        """A ``FlagSnapshot`` of ``names`` and ``variant_flags`` (same shape as ``Flags.evaluate``)."""
        self.contexts.append(context)
        snap = FlagSnapshot()
        for name in names:
            snap.enabled[name] = self.enabled.get(name, default)
        for name in variant_flags:
            snap.enabled[name] = self.enabled.get(name, default)
            if snap.enabled[name] and name in self.variants:
                snap.variants[name] = self.variants[name]
                if name in self.payloads:
                    snap.payloads[name] = self.payloads[name]
        return snap
