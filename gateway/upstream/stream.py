"""``UpstreamStream``: an open upstream stream whose first chunk the router has read (so every
failure before it was retried or mapped there); later chunks are checked
(``gateway.upstream.shapes.check_chunk``), failures after the first chunk are raised, never
retried. Its span (``gateway.upstream.spans``) ends with the stream, and its tokens are charged to
its deployment's ``tpm`` budget then (``gateway.upstream.deployment_limits``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from opentelemetry.trace import Span

from gateway.upstream.deployment_limits import Charge
from gateway.upstream.errors import AttemptFailed
from gateway.upstream.shapes import check_chunk
from gateway.upstream.spans import end_span, finish_reasons, record_response
from gateway.upstream.transports import Deployment
from rollguard.errors import UpstreamError

__all__ = ["UpstreamStream"]


class UpstreamStream:
    """An open upstream stream whose first chunk has already been read (so connect errors, HTTP
    errors and a broken start were raised by ``Upstream.open_stream`` as proper errors).

    Async iterator of chunk dicts (OpenAI ``chat.completion.chunk`` shape). Errors after the first
    chunk raise ``UpstreamTimeout`` / ``UpstreamUnavailable`` / ``UpstreamRateLimited`` from
    ``__anext__`` (never retried: bytes may already be with the client). Always ``await aclose()``
    (or use ``async with``); it closes the connection if the stream was not read to its end.
    ``deployment`` is the deployment that answered; ``usage`` the upstream's usage when seen.
    """

    charge: Charge | None = None
    """Charges the stream's tokens to its deployment's ``tpm`` budget at its end (when it has one)."""

    def __init__(
        self, deployment: Deployment, first: dict[str, Any], rest: AsyncIterator[dict[str, Any]], span: Span
    ) -> None:
        self.deployment = deployment
        self._first: dict[str, Any] | None = first
        self._rest = rest
        self._span = span
        self._finish: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self._closed = False
        self._observe(first)

    def _observe(self, chunk: dict[str, Any]) -> None:
        if self.model is None and isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        u = chunk.get("usage")
        if isinstance(u, dict):
            self.usage = u
        self._finish.extend(finish_reasons(chunk))

    def __aiter__(self) -> UpstreamStream:
        return self

    def ready(self) -> bool:
        """True when the next chunk is already parsed: no network wait (lean transport only)."""
        ready = getattr(self._rest, "ready", None)
        return self._first is not None or self._closed or (ready is not None and bool(ready()))

    async def __anext__(self) -> dict[str, Any]:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        if self._closed:
            raise StopAsyncIteration
        try:
            chunk = check_chunk(await self._rest.__anext__())
        except StopAsyncIteration:
            await self.aclose()
            raise
        except AttemptFailed as f:
            await self._end(f.error)
            raise f.error from f.error.__cause__ or None
        self._observe(chunk)
        return chunk

    async def _end(self, error: UpstreamError | None) -> None:
        if self._closed:
            return
        self._closed = True
        aclose = getattr(self._rest, "aclose", None)
        if aclose is not None:
            await aclose()
        record_response(self._span, {"model": self.model, "usage": self.usage}, self._finish)
        end_span(self._span, error)
        if self.charge is not None:
            await self.charge(self.deployment, self.usage)

    async def aclose(self) -> None:
        """Stop reading; close the upstream connection; end the span. Idempotent."""
        await self._end(None)

    async def __aenter__(self) -> UpstreamStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
