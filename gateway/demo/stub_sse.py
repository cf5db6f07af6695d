"""The demo upstream's server-sent events: a plain streamed reply and a scripted stream (see
``gateway.demo.upstream`` for the script's stream items)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from gateway.demo.upstream import StubState

log = logging.getLogger(__name__)
_P = ParamSpec("_P")


def _quiet_on_disconnect(
    handler: Callable[_P, Awaitable[web.StreamResponse]],
) -> Callable[_P, Awaitable[web.StreamResponse]]:
    """A stream handler whose client may leave mid-stream: the write into the closed connection
    (aiohttp's ``ClientConnectionResetError``, a ``ConnectionResetError``) ends the handler with a
    debug line instead of aiohttp's logged traceback. The response then goes nowhere."""

    @functools.wraps(handler)
    async def run(*args: _P.args, **kwargs: _P.kwargs) -> web.StreamResponse:
        try:
            return await handler(*args, **kwargs)
        except ConnectionResetError as exc:
            log.debug("demo upstream: the client left mid-stream (%s)", exc)
            return web.StreamResponse()

    return run


def split_text(text: str, n: int) -> list[str]:
    """``text`` in exactly ``n`` pieces (some may be empty when ``text`` is shorter than ``n``)."""
    size = len(text) / n if n else 0
    return [text[round(i * size) : round((i + 1) * size)] for i in range(n)]


class _Chunks:
    """Builds the chunk dicts of one streamed reply."""

    def __init__(self, state: StubState, model: str) -> None:
        self.head = {
            "id": state.next_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

    def delta(self, delta: dict[str, Any], index: int = 0, finish: str | None = None) -> dict[str, Any]:
        return {**self.head, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}

    def usage(self, usage: Any) -> dict[str, Any]:
        return {**self.head, "choices": [], "usage": usage}


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


@_quiet_on_disconnect
async def stream_plain(
    request: web.Request,
    body: dict[str, Any],
    state: StubState,
    model: str,
    text: str,
    usage: Any,
    n: int = 1,
    finish: str = "stop",
) -> web.StreamResponse:
    """Stream ``text`` as each of ``n`` choices (``index`` 0..n-1, one after the other) in
    ``x-stub-chunks`` content chunks (default ``state.chunks``) and a finish chunk per choice, then
    the usage chunk if asked, and ``[DONE]``; paced by ``x-stub-chunk-delay-ms``."""
    pieces = split_text(text, int(request.headers.get("x-stub-chunks", state.chunks)))
    delay = float(request.headers.get("x-stub-chunk-delay-ms", 0)) / 1000
    c = _Chunks(state, model)
    events = []
    for index in range(n):
        for i, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            events.append(_sse(c.delta(delta, index)))
        events.append(_sse(c.delta({}, index, finish=finish)))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(_sse(c.usage(usage)))
    events.append(b"data: [DONE]\n\n")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    if delay:
        for e in events:
            await resp.write(e)
            await asyncio.sleep(delay)
    else:
        await resp.write(b"".join(events))
    await resp.write_eof()
    return resp


def _item_bytes(item: dict[str, Any], c: _Chunks) -> bytes | None:
    if "raw" in item:
        return str(item["raw"]).encode("utf-8")
    if "content" in item:
        delta: dict[str, Any] = {"content": item["content"]}
        if item.get("role"):
            delta = {"role": item["role"], **delta}
        data = _sse(c.delta(delta, int(item.get("index", 0))))
    elif "tool_call" in item:
        tc = dict(item["tool_call"])
        out: dict[str, Any] = {"index": tc.get("index", 0)}
        if "id" in tc:
            out["id"] = tc["id"]
            out["type"] = "function"
        fn = {k: tc[k] for k in ("name", "arguments") if k in tc}
        if fn:
            out["function"] = fn
        data = _sse(c.delta({"tool_calls": [out]}))
    elif "finish_reason" in item:
        data = _sse(c.delta({}, int(item.get("index", 0)), finish=item["finish_reason"]))
    elif "usage" in item:
        data = _sse(c.usage(item["usage"]))
    elif "chunk" in item:
        data = _sse(item["chunk"])
    elif "error" in item:
        data = _sse({"error": item["error"]})
    else:
        return None
    if item.get("crlf"):
        data = data.replace(b"\n", b"\r\n")
    return data


@_quiet_on_disconnect
async def stream_script(
    request: web.Request, body: dict[str, Any], state: StubState, model: str, script: dict[str, Any]
) -> web.StreamResponse:
    """Stream exactly the script's ``chunks`` items (see ``gateway.demo.upstream``)."""
    c = _Chunks(state, model)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    items: list[dict[str, Any]] = list(script["chunks"])
    if (
        "usage" in script
        and (body.get("stream_options") or {}).get("include_usage")
        and not any("usage" in i for i in items)
    ):
        items.append({"usage": script["usage"]})
    for item in items:
        if "delay_ms" in item and len(item) == 1:
            await asyncio.sleep(float(item["delay_ms"]) / 1000)
            continue
        if item.get("disconnect"):
            if request.transport is not None:
                request.transport.abort()
            return resp
        data = _item_bytes(item, c)
        if data is None:
            continue
        split = item.get("split_at")
        if isinstance(split, int) and 0 < split < len(data):
            await resp.write(data[:split])
            await asyncio.sleep(0.02)
            await resp.write(data[split:])
        else:
            await resp.write(data)
    if script.get("done", True):
        await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp
