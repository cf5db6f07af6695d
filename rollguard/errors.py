"""The rollguard exception tree. Foreign exceptions (litellm, aiohttp, redis, Unleash) are translated
into these at the boundary that meets them (``raise ... from exc``); nothing foreign leaks past
``gateway/``. Every class knows the HTTP status and the OpenAI error ``type``/``code`` it becomes,
so the single error boundary in ``gateway/errors.py`` needs no lookup table.

::

    RollguardError
    ├── ConfigError                  bad configuration (names the file and the field); startup only
    ├── ClientError                  the caller's mistake: 4xx, never a 500
    │   ├── InvalidRequest           400 invalid_request_error (malformed JSON, wrong types, bad UTF-8)
    │   ├── AuthenticationFailed     401 authentication_error (missing or wrong API key)
    │   ├── PermissionDenied         403 permission_denied (key or reviewer lacks the grant)
    │   ├── NotFound                 404 not_found (unknown model -> code model_not_found)
    │   ├── Conflict                 409 conflict (a transition the current state does not allow)
    │   ├── PayloadTooLarge          413 request_too_large
    │   ├── UnprocessableEntity      400 invalid_value (valid JSON, impossible values; OpenAI: 400)
    │   └── RateLimited              429 rate_limit_exceeded (our own limits)
    ├── UpstreamError                anything from the model endpoint
    │   ├── UpstreamBadRequest       400 the upstream rejected the request (message passed on)
    │   ├── UpstreamRateLimited      429 the upstream throttled us
    │   ├── UpstreamUnavailable      502 connection refused / 5xx / broken stream / bad credentials
    │   │   ├── UpstreamOverloaded   503 the upstream answered 503 (overloaded, try later)
    │   │   └── UpstreamInvalidResponse 502 the reply is not a chat completion (or chunk)
    │   └── UpstreamTimeout          504 no answer in time
    ├── GuardrailUnavailable         503 a policy with on_error=block raised or timed out
    └── StoreError                   the Redis store failed (the request is still answered; the
        │                            interaction is kept in memory and retried)
        ├── StoreUnavailable         503 the server cannot be reached (refused, reset, closed)
        ├── StoreTimeout             503 the server did not answer in time
        └── StoreFull                503 no room to keep another record (refused at admission,
                                     with Retry-After)
"""

from __future__ import annotations

from typing import Any


class RollguardError(Exception):
    """Base of every rollguard error. ``status`` is the HTTP status it maps to; ``type`` and
    ``code`` are the OpenAI error body fields."""

    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_body(self, **extra: Any) -> dict[str, Any]:
        """OpenAI's error shape: ``{"error": {"message", "type", "param", "code", **extra}}``."""
        err: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        err.update(extra)
        return {"error": err}


class ConfigError(RollguardError):
    """Invalid configuration. ``source`` is the file (or ``environment``), ``field`` the dotted
    path of the offending field."""

    type = "configuration_error"
    code = "invalid_config"

    def __init__(self, message: str, *, source: str = "", field: str = "") -> None:
        where = ": ".join(p for p in (source, field) if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.field = field


class ClientError(RollguardError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidRequest(ClientError):
    pass


class AuthenticationFailed(ClientError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ClientError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(ClientError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class Conflict(ClientError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(ClientError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnprocessableEntity(ClientError):
    """Valid JSON of the right types with impossible values. 400, as OpenAI answers (never 422);
    ``code: invalid_value`` tells it apart from a malformed request."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class RateLimited(ClientError):
    """A rate limit of ours (``rate_limits:``) refused the request. ``retry_after``: seconds
    until the budget has room again (sent as ``Retry-After``)."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(RollguardError):
    """Anything from the model endpoint. ``retry_after``: seconds the upstream asked us to wait
    (its ``Retry-After`` / ``retry-after-ms`` on a 429 or 503), or None; the HTTP boundary passes
    it on to the client as ``Retry-After``."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    retry_after: float | None = None


class UpstreamBadRequest(UpstreamError):
    status = 400
    type = "invalid_request_error"
    code = "upstream_rejected_request"


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


class UpstreamUnavailable(UpstreamError):
    status = 502
    code = "upstream_unavailable"


class UpstreamOverloaded(UpstreamUnavailable):
    """The upstream answered 503 (overloaded or down for maintenance): a temporary condition, so
    the client gets a 503 too (with ``Retry-After`` when the upstream sent one)."""

    status = 503
    code = "upstream_overloaded"


class UpstreamInvalidResponse(UpstreamUnavailable):
    """The upstream answered, but not with a valid chat completion (or stream chunk): wrong
    shape, wrong types, invalid JSON (``gateway.upstream.shapes``). Retried and fallen back like
    other upstream faults."""

    code = "upstream_invalid_response"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class GuardrailUnavailable(RollguardError):
    status = 503
    type = "server_error"
    code = "guardrail_unavailable"


class StoreError(RollguardError):
    status = 503
    type = "server_error"
    code = "store_unavailable"


class StoreUnavailable(StoreError):
    """The Redis server cannot be reached (connection refused, reset or closed)."""


class StoreTimeout(StoreError):
    """The Redis server did not answer in time."""


class StoreFull(StoreError):
    """No room for another audit record (memory queue or spool full): the request is refused at
    admission, before anything is accepted. ``retry_after``: seconds the client should wait (sent
    as ``Retry-After``)."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
