"""Error mapping of the upstream boundary: HTTP statuses, aiohttp and litellm exceptions ->
``rollguard.errors`` (``UpstreamError`` subclasses), each with its retry/fallback policy
(``AttemptFailed``). Used by ``gateway.upstream_transport`` and ``gateway.upstream``; see the
``gateway.upstream`` docstring for the table."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from rollguard.errors import (
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = [
    "AttemptFailed",
    "failed",
    "map_http_error",
    "map_litellm_error",
    "map_transport_error",
    "stream_error_event",
]

_MAX_MESSAGE = 500
_NOT_RETRIED = frozenset({"upstream_auth_failed", "upstream_model_not_found"})

# ---------------------------------------------------------------------------------------------- errors


@dataclass(slots=True)
class AttemptFailed(Exception):
    """One failed attempt: the mapped error, whether another attempt may help, whether a
    fallback alias may help."""

    error: UpstreamError
    retryable: bool
    fallback: bool


def _upstream_message(raw: bytes) -> str:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:_MAX_MESSAGE].decode("utf-8", errors="replace").strip()
    msg: Any = obj
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        msg = err.get("message") or err.get("detail") if isinstance(err, dict) else err
        if msg is None and isinstance(obj.get("detail"), str):
            msg = obj["detail"]
    return str(msg)[:_MAX_MESSAGE] if msg else ""


def map_http_error(status: int, raw: bytes = b"") -> UpstreamError:
    """The rollguard error for an upstream HTTP error ``status`` with body ``raw``.

    400/409/413/422 and other 4xx -> ``UpstreamBadRequest`` with the upstream's message (truncated
    to 500 characters); 401/403 -> ``UpstreamUnavailable`` (the gateway's upstream credentials are
    wrong, the client cannot fix that; the upstream's text is not passed on); 404 ->
    ``UpstreamUnavailable`` (the configured model or api_base is wrong); 408 -> ``UpstreamTimeout``;
    429 -> ``UpstreamRateLimited``; 5xx and anything else -> ``UpstreamUnavailable``."""
    if status in (401, 403):
        return UpstreamUnavailable(
            f"the upstream rejected the gateway's credentials (HTTP {status})", code="upstream_auth_failed"
        )
    if status == 404:
        return UpstreamUnavailable(
            "the upstream does not know the configured model or path (HTTP 404)",
            code="upstream_model_not_found",
        )
    if status == 408:
        return UpstreamTimeout("the upstream timed out (HTTP 408)")
    if status == 429:
        return UpstreamRateLimited(_upstream_message(raw) or "the upstream is rate limiting (HTTP 429)")
    if 400 <= status < 500:
        return UpstreamBadRequest(
            _upstream_message(raw) or f"the upstream rejected the request (HTTP {status})"
        )
    return UpstreamUnavailable(f"the upstream failed (HTTP {status})")


def failed(err: UpstreamError, cause: BaseException | None) -> AttemptFailed:
    """Wrap a mapped error with its retry/fallback policy: a bad request is final (no retry, no
    fallback); rejected credentials and an unknown upstream model are not retried on the same
    alias but may fall back; everything else (5xx, connection, timeout, 429) is retried."""
    err.__cause__ = cause
    if isinstance(err, UpstreamBadRequest):
        return AttemptFailed(err, retryable=False, fallback=False)
    if err.code in _NOT_RETRIED:
        return AttemptFailed(err, retryable=False, fallback=True)
    return AttemptFailed(err, retryable=True, fallback=True)


def map_transport_error(exc: BaseException, what: str) -> AttemptFailed:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):  # aiohttp.ServerTimeoutError included
        return failed(UpstreamTimeout(f"the upstream did not answer in time ({what})"), exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return failed(UpstreamUnavailable(f"cannot connect to the upstream ({what})"), exc)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return failed(UpstreamUnavailable(f"the upstream broke the connection ({what})"), exc)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return failed(UpstreamUnavailable(f"upstream connection error ({what}): {type(exc).__name__}"), exc)
    return failed(UpstreamUnavailable(f"upstream call failed ({what}): {type(exc).__name__}"), exc)


_LITELLM_PREFIX = re.compile(r"^(?:litellm\.\w+:\s*)?(?:\w+Exception\s*-\s*)?")


def map_litellm_error(exc: BaseException) -> AttemptFailed:
    """litellm's exception classes -> ours (litellm is imported by the caller already)."""
    import litellm

    ex = litellm.exceptions
    msg = _LITELLM_PREFIX.sub("", str(getattr(exc, "message", "") or exc))[:_MAX_MESSAGE]
    if isinstance(exc, ex.Timeout):
        return failed(UpstreamTimeout("the upstream did not answer in time"), exc)
    if isinstance(exc, ex.RateLimitError):
        return failed(UpstreamRateLimited(msg or "the upstream is rate limiting"), exc)
    if isinstance(exc, ex.AuthenticationError | ex.PermissionDeniedError):
        status = getattr(exc, "status_code", 401)
        return failed(map_http_error(status if status in (401, 403) else 401), exc)
    if isinstance(exc, ex.NotFoundError):
        return failed(map_http_error(404), exc)
    if isinstance(exc, ex.BadRequestError | ex.UnprocessableEntityError):
        return failed(UpstreamBadRequest(msg or "the upstream rejected the request"), exc)
    if isinstance(exc, ex.APIConnectionError):
        return failed(UpstreamUnavailable("cannot connect to the upstream"), exc)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 600:
        return failed(map_http_error(status, msg.encode()), exc)
    return failed(UpstreamUnavailable(f"upstream call failed: {type(exc).__name__}"), exc)


def stream_error_event(chunk: Mapping[str, Any]) -> AttemptFailed:
    err = chunk.get("error")
    code = err.get("code") if isinstance(err, dict) else None
    if code in (429, "429", "rate_limit_exceeded"):
        return failed(UpstreamRateLimited("the upstream reported a rate limit in the stream"), None)
    return failed(UpstreamUnavailable("the upstream reported an error in the stream"), None)
