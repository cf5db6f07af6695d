"""The lean path: OpenAI-compatible endpoints (``openai/``, ``hosted_vllm/``, ``lm_studio/``,
``llamafile/``) over one pooled aiohttp session, the body serialised with orjson, the stream read
with our SSE parser. A ``Transport``; raises ``AttemptFailed``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
from opentelemetry.propagate import inject

from gateway.streaming.sse import SSEParser, decode_chunk
from gateway.upstream.errors import (
    AttemptFailed,
    failed,
    http_failure,
    map_transport_error,
    stream_error_event,
)
from gateway.upstream.transports import Deployment
from rollguard.errors import UpstreamInvalidResponse, UpstreamUnavailable

__all__ = ["LeanTransport"]


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

    async def open_stream(
        self, dep: Deployment, body: Mapping[str, Any], read_timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
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
        return self._events(resp)

    @staticmethod
    async def _events(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
        parser = SSEParser()
        done = False
        try:
            try:
                async for data in resp.content.iter_any():
                    for ev in parser.feed(data):
                        chunk = _decode(ev)
                        if chunk is None:
                            done = True
                            return
                        if chunk:
                            yield chunk
                for ev in parser.close():
                    chunk = _decode(ev)
                    if chunk is None:
                        done = True
                        return
                    if chunk:
                        yield chunk
                done = True
            except AttemptFailed:
                raise
            except Exception as exc:
                raise map_transport_error(exc, "stream") from exc
        finally:
            if done:
                resp.release()
            else:
                resp.close()


def _decode(ev: Any) -> dict[str, Any] | None:
    try:
        chunk = decode_chunk(ev)
    except UpstreamUnavailable as exc:
        raise failed(exc, exc.__cause__) from exc
    if chunk is not None and "error" in chunk and "choices" not in chunk:
        raise stream_error_event(chunk)
    return chunk
