"""The lean path: OpenAI-compatible endpoints (``openai/``, ``hosted_vllm/``, ``lm_studio/``,
``llamafile/``) over one pooled aiohttp session, the body serialised with orjson, the stream read
with our SSE parser. A ``Transport``; raises ``AttemptFailed``."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from opentelemetry.propagate import inject

from gateway.streaming.sse import SSEEvent, SSEParser, decode_chunk
from gateway.upstream.errors import (
    AttemptFailed,
    failed,
    http_failure,
    map_transport_error,
    stream_error_event,
)
from gateway.upstream.transports import Deployment
from rollguard.errors import UpstreamInvalidResponse, UpstreamUnavailable

__all__ = ["LeanTransport", "SSEChunks"]


class LeanTransport:
    """OpenAI-compatible endpoints over one pooled aiohttp session."""

    def __init__(self, connector_limit: int) -> None:
        self._limit = connector_limit
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=30, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @staticmethod
    def _headers(dep: Deployment) -> dict[str, str]:
        """The request headers: JSON, the deployment's own, its key, and the current span's W3C
        trace context (``traceparent``; the router makes the attempt's span current)."""
        h = {"Content-Type": "application/json", **dep.headers}
        if dep.api_key:
            h["Authorization"] = f"Bearer {dep.api_key}"
        inject(h)
        return h

    @staticmethod
    def _payload(dep: Deployment, body: Mapping[str, Any], stream: bool) -> bytes:
        payload = dict(body)
        payload["model"] = dep.model
        if stream:
            payload["stream"] = True
            opts = payload.get("stream_options")
            payload["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
        else:
            payload.pop("stream", None)
            payload.pop("stream_options", None)
        return orjson.dumps(payload)

    async def complete(self, dep: Deployment, body: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        data = self._payload(dep, body, stream=False)
        try:
            async with self.session().post(
                dep.url, data=data, headers=self._headers(dep), timeout=aiohttp.ClientTimeout(total=seconds)
            ) as resp:
                raw = await resp.read()
                status = resp.status
                headers = resp.headers
        except AttemptFailed:
            raise
        except Exception as exc:
            raise map_transport_error(exc, "completion") from exc
        if status >= 400:
            raise http_failure(status, raw, headers)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise failed(UpstreamInvalidResponse("the upstream sent invalid JSON"), exc) from exc
        return obj  # type: ignore[no-any-return]  # shape checked by the router (upstream.shapes)

    async def open_stream(self, dep: Deployment, body: Mapping[str, Any], read_timeout: float) -> SSEChunks:
        data = self._payload(dep, body, stream=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=read_timeout, sock_read=read_timeout)
        try:
            resp = await self.session().post(dep.url, data=data, headers=self._headers(dep), timeout=timeout)
        except Exception as exc:
            raise map_transport_error(exc, "stream") from exc
        if resp.status >= 400:
            try:
                raw = await resp.read()
            except Exception:
                raw = b""
            resp.release()
            raise http_failure(resp.status, raw, resp.headers)
        return SSEChunks(resp)


class SSEChunks:
    """The chunk dicts of an upstream SSE response, one network read at a time: an async iterator
    (``async for chunk in SSEChunks(resp)``) with ``ready()``, True when the next ``__anext__``
    returns without waiting for the network (its event, or the end of the stream, was in a read
    already parsed). The stream guard checks a burst of chunks once instead of per chunk.

    Errors: ``AttemptFailed`` (a mid-stream error event, invalid JSON, a transport error mapped by
    ``map_transport_error``); after an error or the end the iterator is finished. ``aclose()``
    releases the connection after a complete stream and closes it otherwise (idempotent)."""

    __slots__ = ("_closed", "_done", "_events", "_parser", "_resp")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self._parser = SSEParser()
        self._events: deque[SSEEvent] = deque()
        self._done = False
        """The stream ended cleanly (``[DONE]`` or end of body): the connection can be reused."""
        self._closed = False

    def __aiter__(self) -> SSEChunks:
        return self

    def ready(self) -> bool:
        """True when the next chunk (or the end) is already parsed: no network wait. Events with
        blank data (skipped by ``__anext__`` anyway) are dropped first, so they never count."""
        events = self._events
        while events and not events[0].data.strip():
            events.popleft()
        return bool(events) or self._closed

    async def __anext__(self) -> dict[str, Any]:
        while True:
            while not self._events:
                if self._closed:
                    raise StopAsyncIteration
                await self._read()
            try:
                chunk = _decode(self._events.popleft())
            except AttemptFailed:
                await self.aclose()
                raise
            except Exception as exc:
                await self.aclose()
                raise map_transport_error(exc, "stream") from exc
            if chunk is None:  # [DONE]
                self._done = True
                await self.aclose()
                raise StopAsyncIteration
            if chunk:
                return chunk

    async def _read(self) -> None:
        """One network read into the event queue; at the end of the body, the parser's last event
        (or the end itself: ``_closed``)."""
        try:
            data = await self._resp.content.readany()
        except BaseException as exc:
            await self.aclose()
            if isinstance(exc, Exception):
                raise map_transport_error(exc, "stream") from exc
            raise
        if data:
            self._events.extend(self._parser.feed(data))
            return
        self._events.extend(self._parser.close())
        if not self._events:
            self._done = True
            await self.aclose()

    async def aclose(self) -> None:
        """Release (complete stream) or close (anything else) the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._events.clear()
        if self._done:
            self._resp.release()
        else:
            self._resp.close()


def _decode(ev: Any) -> dict[str, Any] | None:
    try:
        chunk = decode_chunk(ev)
    except UpstreamUnavailable as exc:
        raise failed(exc, exc.__cause__) from exc
    if chunk is not None and "error" in chunk and "choices" not in chunk:
        raise stream_error_event(chunk)
    return chunk
