"""Error mapping of the upstream boundary: HTTP statuses, aiohttp and litellm exceptions ->
``rollguard.errors`` (``UpstreamError`` subclasses), each with its retry/fallback policy
(``AttemptFailed``), and the upstream's ``Retry-After`` hint (``parse_retry_after``) on the error
of a 429 or 503. Used by ``gateway.upstream.transports`` and ``gateway.upstream.router``; see the
``gateway.upstream.router`` docstring for the table.

An upstream's own error text (a 400's or 429's message) is passed on to the client, truncated to
500 characters and with PII and secrets masked (``redact_message``): upstreams quote the request
("context too long for user john.doe@example.com"), and the gateway never echoes such a value.
A 4xx's ``param`` and ``code`` (OpenAI's error fields: which field, what kind) are kept when they
are strings, masked and cut the same way (``upstream_fields``); otherwise ``param`` is null and
``code`` is ``upstream_rejected_request``."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from policies.privacy import redact_text
from rollguard.errors import (
    NotFound,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = [
    "MAX_RETRY_AFTER",
    "AttemptFailed",
    "failed",
    "http_failure",
    "map_http_error",
    "map_litellm_error",
    "map_transport_error",
    "misconfigured",
    "model_not_served",
    "parse_retry_after",
    "redact_message",
    "stream_error_event",
    "upstream_fields",
]

_MAX_MESSAGE = 500
_REDACT_MARGIN = 512
"""Characters past ``_MAX_MESSAGE`` read before redacting, so an entity that starts before the cut
is seen whole (then the result is cut to ``_MAX_MESSAGE``)."""
_NOT_RETRIED = frozenset({"upstream_auth_failed", "upstream_model_not_found", "upstream_misconfigured"})
_HINTED_STATUSES = frozenset({429, 503})
"""Statuses whose ``Retry-After`` we honour (RFC 9110 10.2.3: 503; RFC 6585: 429)."""

MAX_RETRY_AFTER = 3600.0
"""Seconds; a larger upstream hint is capped to this (a garbage value never tells a client to go
away for days)."""

_DELAY_SECONDS = re.compile(r"\d+(?:\.\d+)?")

# ---------------------------------------------------------------------------------------------- Retry-After


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """The wait an upstream response asks for, in seconds (0.0 .. ``MAX_RETRY_AFTER``), or None.

    ``headers``: a case-insensitive mapping (aiohttp's ``CIMultiDictProxy``, httpx's ``Headers``)
    or None. Read, first usable wins: OpenAI's ``retry-after-ms`` (milliseconds, may be
    fractional), then ``Retry-After`` (RFC 9110 10.2.3) as delay-seconds (fractions accepted, as
    the OpenAI SDK does) or as an HTTP-date (a date in the past is 0.0; ``now`` is the Unix time to
    measure from, default ``time.time()``). Garbage (negative, non-numeric, NaN, an impossible
    date) is ignored (None); a huge value is capped. Never raises."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        raw = headers.get("retry-after")
    except Exception:  # a foreign mapping that cannot be read: no hint
        return None
    if isinstance(ms, str):
        try:
            value = float(ms)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return min(value / 1000.0, MAX_RETRY_AFTER)
    if not isinstance(raw, str):
        return None
    raw = raw.strip()
    if _DELAY_SECONDS.fullmatch(raw):
        return min(float(raw), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    try:
        at = (when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)).timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    delta = at - (time.time() if now is None else now)
    if not math.isfinite(delta):
        return None
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


# ---------------------------------------------------------------------------------------------- errors


@dataclass(slots=True)
class AttemptFailed(Exception):
    """One failed attempt: the mapped error, whether another attempt may help, whether a
    fallback alias may help."""

    error: UpstreamError
    retryable: bool
    fallback: bool


def redact_message(text: str) -> str:
    """``text`` (an upstream's error message) with PII and secrets replaced by typed placeholders
    (``policies.privacy.redact_text``), so that an upstream quoting the request never makes the
    gateway echo a value its guardrails mask. At most ~1,000 characters reach it."""
    return redact_text(text)


def _upstream_message(raw: bytes) -> str:
    """The upstream error body's message, ``redact_message``-ed, then cut to 500 characters."""
    return _clean(_raw_message(raw))


def _clean(msg: str) -> str:
    return redact_message(msg[: _MAX_MESSAGE + _REDACT_MARGIN])[:_MAX_MESSAGE]


def _raw_message(raw: bytes) -> str:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[: _MAX_MESSAGE + _REDACT_MARGIN].decode("utf-8", errors="replace").strip()
    msg: Any = obj
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        msg = err.get("message") or err.get("detail") if isinstance(err, dict) else err
        if msg is None and isinstance(obj.get("detail"), str):
            msg = obj["detail"]
    return str(msg) if msg else ""


def upstream_fields(err: Any) -> tuple[str | None, str | None]:
    """``(param, code)`` of an upstream error object (the ``error`` of an OpenAI error body, or a
    provider SDK's exception): each kept when it is a non-empty string, ``redact_message``-ed and
    cut to 500 characters; else None (a numeric ``code`` such as 400 is dropped)."""
    fields = []
    for key in ("param", "code"):
        v = err.get(key) if isinstance(err, dict) else getattr(err, key, None)
        fields.append(_clean(v) if isinstance(v, str) and v.strip() else None)
    return fields[0], fields[1]


def _body_fields(raw: bytes) -> tuple[str | None, str | None]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    return upstream_fields(obj.get("error", obj) if isinstance(obj, dict) else None)


def map_http_error(status: int, raw: bytes = b"") -> UpstreamError:
    """The rollguard error for an upstream HTTP error ``status`` with body ``raw``.

    400/409/413/422 and other 4xx -> ``UpstreamBadRequest`` with the upstream's message (PII and
    secrets masked by ``redact_message``, then truncated to 500 characters) and its string
    ``param`` and ``code`` (``upstream_fields``; default code ``upstream_rejected_request``); 401/403 ->
    ``UpstreamUnavailable`` (the gateway's upstream credentials are wrong, the client cannot fix
    that; the upstream's text is not passed on); 404 -> ``UpstreamUnavailable`` (the configured
    model or api_base is wrong); 408 -> ``UpstreamTimeout``; 429 -> ``UpstreamRateLimited`` (its
    message masked the same way); 5xx and anything else -> ``UpstreamUnavailable``."""
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
        param, code = _body_fields(raw)
        return UpstreamBadRequest(
            _upstream_message(raw) or f"the upstream rejected the request (HTTP {status})",
            param=param,
            code=code,
        )
    if status == 503:
        return UpstreamOverloaded("the upstream is overloaded or unavailable (HTTP 503)")
    return UpstreamUnavailable(f"the upstream failed (HTTP {status})")


def http_failure(status: int, raw: bytes, headers: Any) -> AttemptFailed:
    """A failed attempt for an upstream HTTP error: ``map_http_error`` plus, on a 429 or 503, the
    upstream's ``Retry-After`` hint (``parse_retry_after(headers)``) on the error."""
    hint = parse_retry_after(headers) if status in _HINTED_STATUSES else None
    return failed(map_http_error(status, raw), None, retry_after=hint)


def failed(
    err: UpstreamError, cause: BaseException | None, *, retry_after: float | None = None
) -> AttemptFailed:
    """Wrap a mapped error with its retry/fallback policy: a bad request is final (no retry, no
    fallback); rejected credentials and an unknown upstream model are not retried on the same
    alias but may fall back; everything else (5xx, connection, timeout, 429) is retried.
    ``retry_after`` (seconds, from ``parse_retry_after``) is stored on the error."""
    err.__cause__ = cause
    if retry_after is not None:
        err.retry_after = retry_after
    if isinstance(err, UpstreamBadRequest):
        return AttemptFailed(err, retryable=False, fallback=False)
    if err.code in _NOT_RETRIED:
        return AttemptFailed(err, retryable=False, fallback=True)
    return AttemptFailed(err, retryable=True, fallback=True)


def misconfigured(what: str) -> UpstreamUnavailable:
    """The error for a deployment the gateway cannot call as configured (a provider litellm does
    not know, an ``api_base`` that is not a URL): a server-side fault (502
    ``upstream_misconfigured``, not retried on the alias, may fall back), never a 400 that blames
    the client; the message names no library internals."""
    return UpstreamUnavailable(
        f"the gateway's model deployment is misconfigured ({what}); the operator must fix the config",
        code="upstream_misconfigured",
    )


def map_transport_error(exc: BaseException, what: str) -> AttemptFailed:
    if isinstance(exc, aiohttp.InvalidURL):
        return failed(misconfigured("its api_base is not a valid URL"), exc)
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
_LITELLM_SETUP_FAULT = re.compile(
    r"LLM Provider NOT provided|Unmapped LLM provider|Provider List|docs\.litellm\.ai", re.IGNORECASE
)
"""litellm's own refusals of a deployment before any request is sent (``get_llm_provider``:
"LLM Provider NOT provided ... Learn more: https://docs.litellm.ai/docs/providers"). They come as
``BadRequestError`` (400) but are the configuration's fault, not the client's."""


def map_litellm_error(exc: BaseException) -> AttemptFailed:
    """litellm's exception classes -> ours (litellm is imported by the caller already)."""
    import litellm

    ex = litellm.exceptions
    msg = _clean(_LITELLM_PREFIX.sub("", str(getattr(exc, "message", "") or exc)))
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ex.Timeout):
        return failed(UpstreamTimeout("the upstream did not answer in time"), exc)
    if isinstance(exc, ex.RateLimitError):
        return failed(
            UpstreamRateLimited(msg or "the upstream is rate limiting"), exc, retry_after=_litellm_hint(exc)
        )
    if isinstance(exc, ex.AuthenticationError | ex.PermissionDeniedError):
        status = getattr(exc, "status_code", 401)
        return failed(map_http_error(status if status in (401, 403) else 401), exc)
    if isinstance(exc, ex.NotFoundError):
        return failed(map_http_error(404), exc)
    if isinstance(exc, ex.BadRequestError) and _LITELLM_SETUP_FAULT.search(str(exc)):
        return failed(misconfigured("its provider is unknown"), exc)
    if isinstance(exc, ex.BadRequestError | ex.UnprocessableEntityError):
        param, code = upstream_fields(exc)
        body = getattr(exc, "body", None)
        if param is None and code is None and isinstance(body, dict):
            param, code = upstream_fields(body.get("error", body))
        return failed(
            UpstreamBadRequest(msg or "the upstream rejected the request", param=param, code=code), exc
        )
    if isinstance(exc, ex.APIConnectionError):
        return failed(UpstreamUnavailable("cannot connect to the upstream"), exc)
    if isinstance(status, int) and 400 <= status < 600:
        hint = _litellm_hint(exc) if status in _HINTED_STATUSES else None
        return failed(map_http_error(status, msg.encode()), exc, retry_after=hint)
    return failed(UpstreamUnavailable(f"upstream call failed: {type(exc).__name__}"), exc)


def _litellm_hint(exc: BaseException) -> float | None:
    """The upstream's Retry-After from a litellm exception: its ``litellm_response_headers`` or
    the ``response.headers`` of the provider SDK's error (both httpx ``Headers``)."""
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    return parse_retry_after(headers)


def stream_error_event(chunk: Mapping[str, Any]) -> AttemptFailed:
    err = chunk.get("error")
    code = err.get("code") if isinstance(err, dict) else None
    if code in (429, "429", "rate_limit_exceeded"):
        return failed(UpstreamRateLimited("the upstream reported a rate limit in the stream"), None)
    return failed(UpstreamUnavailable("the upstream reported an error in the stream"), None)


MAX_LISTED_MODELS = 20
"""Aliases named in a ``model_not_found`` message at most (then a count of the others)."""


def model_not_served(served: Sequence[str]) -> NotFound:
    """404 ``model_not_found`` for a model no ``model_list`` alias or pattern serves. The message
    never repeats the client's value (errors echo no client input: docs/operations.md) and names
    the configured aliases instead (as ``/v1/models`` lists them; at most ``MAX_LISTED_MODELS``)."""
    listed = ", ".join(served[:MAX_LISTED_MODELS]) or "none"
    more = f" and {len(served) - MAX_LISTED_MODELS} more" if len(served) > MAX_LISTED_MODELS else ""
    return NotFound(
        f"the requested model is not served; configured models: {listed}{more}",
        code="model_not_found",
        param="model",
    )
