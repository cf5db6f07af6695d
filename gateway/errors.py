"""The one error boundary: every exception that reaches the HTTP layer becomes an OpenAI-shaped
error body ``{"error": {"message", "type", "param", "code"}}`` with the right status. Never a stack
trace in a response; never a 500 for the client's mistake.

Mapping: ``rollguard.errors.RollguardError`` subclasses carry their own status/type/code (an
``UpstreamError`` with the upstream's wait adds a ``Retry-After`` header);
Starlette's ``HTTPException`` (404 route, 405 method) keeps its status; FastAPI's
``RequestValidationError`` becomes 400 ``invalid_value`` naming the field (OpenAI answers 400 for
every invalid request, never 422); a string holding a lone UTF-16 surrogate (a JSON ``"\\ud800"``
escape that Python's JSON reader accepts but no store, log or upstream can encode) is 400
``invalid_request``, whichever field or parameter carried it; anything else is a 500
``internal_error`` whose details go to the log only.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from gateway.text_checks import LONE_SURROGATE, has_lone_surrogate, is_lone_surrogate
from rollguard.errors import (
    ClientError,
    InvalidRequest,
    RateLimited,
    RollguardError,
    StoreFull,
    UpstreamError,
)

log = logging.getLogger("rollguard.gateway")

_HTTP_CODES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


ERROR_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "code": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        }
    },
}
"""OpenAI's error shape (extra fields such as ``interaction_id`` or ``policy`` may follow)."""

ERROR_MEANINGS = {
    400: "invalid request: malformed JSON, wrong types, values out of range (code invalid_value), "
    "invalid conversation history, or a guardrail block (code content_filter)",
    401: "missing or unknown API key",
    403: "the credential lacks the grant",
    404: "unknown model alias (code model_not_found) or item",
    409: "the lease was lost, expired or is for another item",
    413: "request body over gateway.max_body_bytes",
    415: "a Content-Encoding other than identity",
    429: "rate limited (ours or the upstream's)",
    502: "the upstream failed or answered something that is not a chat completion",
    503: "a guardrail or the audit store is unavailable, or the upstream is overloaded",
    504: "the upstream did not answer in time",
}


def documented_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting the OpenAI-shaped error answers ``statuses``."""
    return {
        s: {"description": ERROR_MEANINGS[s], "content": {"application/json": {"schema": ERROR_BODY}}}
        for s in statuses
    }


def _openapi_without_422(app: FastAPI) -> None:
    """FastAPI documents a 422 for every route with validated parameters; this boundary answers
    400 instead, so the generated document says 400 (OpenAI's error shape) in its place."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None:
                    responses.setdefault("400", documented_errors(400)[400])
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson (the hot path's serialiser)."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(exc: RollguardError, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """``exc`` as an OpenAI-shaped error response; ``extra`` fields go into the ``error`` object.
    An upstream error that carries the upstream's wait (``UpstreamError.retry_after``, seconds) or
    a full audit store (``StoreFull.retry_after``) or a spent rate limit (``RateLimited``) adds
    ``Retry-After``: whole seconds, rounded up
    (RFC 9110 10.2.3), which the OpenAI SDKs honour when it is at most 60."""
    retry_after = exc.retry_after if isinstance(exc, UpstreamError | StoreFull | RateLimited) else None
    if retry_after is not None:
        headers = {**(headers or {}), "Retry-After": str(math.ceil(retry_after))}
    return json_response(exc.to_body(**extra), status=exc.status, headers=headers)


def response_for(request: Request, exc: Exception) -> Response:
    """The boundary itself: any exception -> an OpenAI-shaped error response."""
    if isinstance(exc, RollguardError):
        if not isinstance(exc, ClientError):
            log.warning("request failed: %s %s (%s)", type(exc).__name__, exc.code, exc.message)
        return error_response(exc)
    if isinstance(exc, StarletteHTTPException):
        etype, code = _HTTP_CODES.get(exc.status_code, ("server_error", "http_error"))
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"unknown endpoint: {request.method} {request.url.path}"
        if exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
        return json_response(body, status=exc.status_code, headers=getattr(exc, "headers", None))
    if isinstance(exc, RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        why = str(first.get("msg", "invalid request"))
        if any(isinstance(e.get("input"), str) and has_lone_surrogate(e["input"]) for e in errors):
            why = LONE_SURROGATE
        msg = f"{param}: {why}" if param else why
        body = {
            "error": {
                "message": msg,
                "type": "invalid_request_error",
                "param": param,
                "code": "invalid_value",
            }
        }
        return json_response(body, status=400)
    if is_lone_surrogate(exc):
        return error_response(InvalidRequest(LONE_SURROGATE))
    log.error(
        "internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc
    )
    body = {
        "error": {
            "message": "internal error in the gateway; it has been logged",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
    return json_response(body, status=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the boundary on ``app`` for every exception class it maps, and make the OpenAPI
    document show its answers (400, not FastAPI's 422)."""

    async def handler(request: Request, exc: Exception) -> Response:
        return response_for(request, exc)

    # UnicodeEncodeError (a lone surrogate in client data) is registered by class so Starlette's
    # exception middleware answers it; the catch-all ``Exception`` handler would re-raise it.
    for cls in (
        RollguardError,
        StarletteHTTPException,
        RequestValidationError,
        UnicodeEncodeError,
        Exception,
    ):
        app.add_exception_handler(cls, handler)
    _openapi_without_422(app)
