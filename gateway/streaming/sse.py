"""The SSE codec of chat-completion streams: bytes in, chunk dicts, bytes out.

* ``SSEParser``: incremental parser for the upstream's ``text/event-stream`` (WHATWG HTML
  "server-sent events" parsing rules: CRLF/LF/CR line ends, ``:`` comment lines, multi-line
  ``data``, a final event without a trailing blank line via ``close()``). ``decode_chunk`` turns an
  event into a chunk dict, ``None`` for ``[DONE]``, and raises ``UpstreamUnavailable`` on invalid
  JSON.
* ``encode_sse``, ``content_chunk``, ``finish_chunk``, ``usage_chunk``, ``error_event``, ``DONE``:
  the chunks and events the gateway writes.
* ``delivered_choice``: what a client received of one choice, from the SSE bytes sent to it.

No network I/O; used by the lean transport (parser) and the stream guard (writer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from rollguard.errors import RollguardError, UpstreamUnavailable

__all__ = [
    "DONE",
    "SSEEvent",
    "SSEParser",
    "base_chunk",
    "content_chunk",
    "decode_chunk",
    "delivered_choice",
    "encode_sse",
    "error_event",
    "finish_chunk",
    "usage_chunk",
]

DONE = b"data: [DONE]\n\n"
"""The OpenAI end-of-stream sentinel, as bytes on the wire."""


# --------------------------------------------------------------------------------------------- SSE in


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched server-sent event. ``data`` is the joined ``data:`` lines (``\\n`` between
    lines); ``event``/``id`` are the optional fields ("" when absent)."""

    data: str
    event: str = ""
    id: str = ""


class SSEParser:
    """Incremental ``text/event-stream`` parser. ``feed(bytes)`` returns the events completed by
    those bytes; ``close()`` returns a final event that had no terminating blank line.

    Robust to: ``:`` comment (keep-alive) lines, empty ``data:`` lines, CRLF and lone CR line ends
    (also a CRLF split across two reads), an event or a JSON document split across network reads,
    multi-line ``data``. Bytes are decoded as UTF-8 per line, so a multi-byte character split across
    reads is fine. Undecodable bytes are replaced (U+FFFD), never raised.
    """

    __slots__ = ("_buf", "_data", "_event", "_id")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event = ""
        self._id = ""

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Parse ``data`` (any split of the stream). Returns the events it completed, in order."""
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            # A CR as the very last byte may be the first half of a CRLF: keep it for the next read.
            keep_cr = buf.endswith(b"\r")
            if keep_cr:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buf += b"\r"
        cut = buf.rfind(b"\n")
        if cut < 0:
            self._buf = buf
            return []
        self._buf = buf[cut + 1 :]
        events: list[SSEEvent] = []
        for raw in buf[:cut].split(b"\n"):
            ev = self._line(raw)
            if ev is not None:
                events.append(ev)
        return events

    def close(self) -> list[SSEEvent]:
        """End of the byte stream: dispatch a pending event that lacked its blank line. The spec
        discards such an event; upstreams that forget the last blank line are common, so it is kept."""
        events: list[SSEEvent] = []
        rest, self._buf = self._buf.rstrip(b"\r"), b""
        if rest:
            ev = self._line(rest)
            if ev is not None:
                events.append(ev)
        ev = self._line(b"")
        if ev is not None:
            events.append(ev)
        return events

    def _line(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            if not self._data:
                self._event = ""
                return None
            ev = SSEEvent("\n".join(self._data), self._event, self._id)
            self._data = []
            self._event = ""
            return ev
        if raw[:1] == b":":
            return None  # comment / keep-alive
        line = raw.decode("utf-8", errors="replace")
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        return None  # "retry" and unknown fields are ignored


def decode_chunk(event: SSEEvent) -> dict[str, Any] | None:
    """The chunk dict carried by ``event``; ``None`` for ``[DONE]``; ``{}`` for an empty ``data:``.

    Raises ``UpstreamUnavailable`` (502) when the data is not a JSON object: a broken upstream
    must become a mapped error, not a crash. The message never quotes the data.
    """
    data = event.data
    if not data.strip():
        return {}
    if data == "[DONE]":
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamUnavailable(
            f"upstream sent an invalid JSON event ({len(data)} characters)", code="upstream_invalid_json"
        ) from exc
    if not isinstance(obj, dict):
        raise UpstreamUnavailable(
            "upstream sent a JSON event that is not an object", code="upstream_invalid_json"
        )
    return obj


# --------------------------------------------------------------------------------------------- SSE out


def encode_sse(chunk: Mapping[str, Any]) -> bytes:
    """``b"data: " + JSON + b"\\n\\n"`` for one chunk dict."""
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def base_chunk(template: Mapping[str, Any]) -> dict[str, Any]:
    """``template`` (any upstream chunk) without its ``choices``/``usage``: the envelope of the
    chunks the gateway writes."""
    out = {k: v for k, v in template.items() if k not in ("choices", "usage")}
    out.setdefault("object", "chat.completion.chunk")
    return out


def error_event(exc: RollguardError) -> bytes:
    """An upstream failure after the stream started (HTTP 200 already sent): OpenAI's mid-stream
    error event ``data: {"error": {...}}``. Send it, then close the response (no ``[DONE]``)."""
    return b"data: " + orjson.dumps(exc.to_body()) + b"\n\n"


def content_chunk(template: Mapping[str, Any], index: int, delta: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice carrying ``delta``. ``template`` gives ``id``,
    ``created``, ``model`` (any upstream chunk); its ``choices``/``usage`` are ignored."""
    out = base_chunk(template)
    out["choices"] = [{"index": index, "delta": delta, "finish_reason": None}]
    return out


def finish_chunk(template: Mapping[str, Any], index: int, finish_reason: str) -> dict[str, Any]:
    """The last chunk of a choice: empty ``delta`` and ``finish_reason`` (``stop``, ``length``,
    ``tool_calls``, or ``content_filter`` when an output guardrail blocked)."""
    out = base_chunk(template)
    out["choices"] = [{"index": index, "delta": {}, "finish_reason": finish_reason}]
    return out


def usage_chunk(template: Mapping[str, Any], usage: Mapping[str, Any]) -> dict[str, Any]:
    """The ``stream_options.include_usage`` chunk: ``"choices": []`` and the token ``usage``."""
    out = base_chunk(template)
    out["choices"] = []
    out["usage"] = dict(usage)
    return out


def delivered_choice(pieces: list[bytes], index: int = 0) -> tuple[str, list[dict[str, Any]], str | None]:
    """What the client received of choice ``index``, from the SSE byte strings written to it (as
    ``StreamGuard`` produced them: one event each): ``(text, tool_calls, finish_reason)``. The
    text is the joined ``delta.content``; tool calls are the whole calls ``StreamGuard`` releases
    in one chunk; ``finish_reason`` is None when the choice's finish chunk was not delivered.
    Used for the audit record of a stream the client left early."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    finish: str | None = None
    for piece in pieces:
        if not piece.startswith(b"data: {"):
            continue
        try:
            chunk = orjson.loads(piece[6:])
        except orjson.JSONDecodeError:
            continue
        for c in chunk.get("choices") or []:
            if not isinstance(c, dict) or c.get("index", 0) != index:
                continue
            delta = c.get("delta") or {}
            if isinstance(delta.get("content"), str):
                text.append(delta["content"])
            for tc in delta.get("tool_calls") or []:
                if isinstance(tc, dict):
                    calls.append({k: v for k, v in tc.items() if k != "index"})
            if c.get("finish_reason"):
                finish = str(c["finish_reason"])
    return "".join(text), calls, finish
