"""The records one chat completion passes between the route and the service: who is asking
(``RequestMeta``), the request in flight (``Exchange``, built by the service, read and written by
each of its steps) and what the route renders (``ChatResult``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import Span

from gateway.flags import FlagContext
from policies.base import CheckContext
from policies.pipeline import Enabled
from rollguard.errors import RollguardError
from rollguard.types import Interaction

__all__ = ["ChatResult", "Exchange", "RequestMeta"]


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """Who is asking: the tenant from the API key, the flag context the route built once
    (user/session ids from the body or headers, the client's remote address), the caller's
    trace context and the request id (``gateway.request_id``)."""

    tenant: str
    flags: FlagContext = field(default_factory=FlagContext)
    trace_context: Context | None = None
    """The caller's trace (W3C ``traceparent``, extracted by the route); None: a new trace."""
    request_id: str | None = None

    @property
    def user(self) -> str | None:
        return self.flags.user_id

    @property
    def session(self) -> str | None:
        return self.flags.session_id


def _all_enabled(_: Any) -> bool:
    return True


@dataclass(slots=True)
class Exchange:
    """One chat completion in flight. ``body`` is the request (after pre_call: the checked
    messages and the upstream alias); ``check`` the pre_call context (its messages and redaction
    vault serve every later stage); ``enabled`` the policies the request's flags switch on;
    ``t0`` / ``u0`` ``time.perf_counter()`` at arrival / when the upstream call started (s)."""

    body: dict[str, Any]
    interaction: Interaction
    span: Span
    t0: float
    enabled: Enabled = _all_enabled
    check: CheckContext | None = None
    u0: float = 0.0

    @property
    def ctx(self) -> CheckContext:
        """The pre_call context (set before the upstream is called)."""
        assert self.check is not None
        return self.check

    def upstream_started(self) -> None:
        self.u0 = time.perf_counter()

    def upstream_done(self) -> None:
        """Set ``interaction.upstream_ms`` (ms since ``upstream_started``)."""
        self.interaction.upstream_ms = (time.perf_counter() - self.u0) * 1000.0


@dataclass(frozen=True, slots=True)
class ChatResult:
    """What the route renders: exactly one of ``completion`` (a ``chat.completion`` dict, HTTP
    200), ``error`` (an OpenAI error body with ``error_fields`` such as the blocking ``policy``
    and ``interaction_id``) or ``stream`` (the SSE bytes). ``after`` writes the audit record of a
    non-streamed reply: await it on the event loop once the response is sent (a stream records
    itself at its end)."""

    interaction: Interaction
    headers: Mapping[str, str] | None = None
    completion: dict[str, Any] | None = None
    error: RollguardError | None = None
    error_fields: Mapping[str, Any] = field(default_factory=dict)
    stream: AsyncIterator[bytes] | None = None
    after: Callable[[], Awaitable[None]] | None = None
