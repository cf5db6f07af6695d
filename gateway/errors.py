"""The one error boundary: every exception that reaches the HTTP layer becomes an OpenAI-shaped
error body ``{"error": {"message", "type", "param", "code"}}`` with the right status. Never a stack
trace in a response; never a 500 for the client's mistake.

Mapping: ``rollguard.errors.RollguardError`` subclasses carry their own status/type/code (an
``UpstreamError`` with the upstream's wait adds a ``Retry-After`` header);
Starlette's ``HTTPException`` (404 route, 405 method) keeps its status; FastAPI's
``RequestValidationError`` becomes 422 naming the field; anything else is a 500 ``internal_error``
whose details go to the log only.
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

from rollguard.errors import ClientError, RollguardError, StoreFull, UpstreamError

log = logging.getLogger("rollguard.gateway")

_HTTP_CODES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", "invalid_value"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson (the hot path's serialiser)."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(exc: RollguardError, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """``exc`` as an OpenAI-shaped error response; ``extra`` fields go into the ``error`` object.
    An upstream error that carries the upstream's wait (``UpstreamError.retry_after``, seconds) or
    a full audit store (``StoreFull.retry_after``) adds ``Retry-After``: whole seconds, rounded up
    (RFC 9110 10.2.3), which the OpenAI SDKs honour when it is at most 60."""
    retry_after = exc.retry_after if isinstance(exc, UpstreamError | StoreFull) else None
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
        msg = f"{param}: {first.get('msg')}" if param else str(first.get("msg", "invalid request"))
        body = {
            "error": {
                "message": msg,
                "type": "invalid_request_error",
                "param": param,
                "code": "invalid_value",
            }
        }
        return json_response(body, status=422)
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
    """Register the boundary on ``app`` for every exception class it maps."""

    async def handler(request: Request, exc: Exception) -> Response:
        return response_for(request, exc)

    for cls in (RollguardError, StarletteHTTPException, RequestValidationError, Exception):
        app.add_exception_handler(cls, handler)
