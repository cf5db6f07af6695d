"""The Unleash context of one request (``FlagContext``): stickiness ids from the body and
headers, the tenant, the client's remote address. Built once per request by the chat route."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SESSION_HEADER", "TENANT_PROPERTY", "USER_HEADER", "FlagContext", "clean_id"]

USER_HEADER = "x-rollguard-user"
SESSION_HEADER = "x-rollguard-session"
TENANT_PROPERTY = "tenantId"
"""The Unleash custom context property carrying the tenant (use it in strategy constraints)."""

_MAX_ID_CHARS = 256
_MISSING_LITERALS = frozenset({"", "none", "null", "undefined", "nil"})


def clean_id(value: object) -> str | None:
    """A usable stickiness id, or None. Strings and ints only; blank values and the literals
    ``None``/``null``/``undefined``/``nil`` (any case) are missing ids -- sending them would put every
    such caller into the same bucket. Longer than 256 characters: truncated."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    if text.lower() in _MISSING_LITERALS:
        return None
    return text[:_MAX_ID_CHARS]


@dataclass(frozen=True, slots=True)
class FlagContext:
    """The Unleash context of one request.

    ``user_id`` / ``session_id`` drive ``default`` stickiness (Unleash hashes
    ``<groupId>:<userId or sessionId>`` with murmur3 into 1..100). A missing id is left out of the context
    entirely (never ``"None"``, ``"null"`` or ``""``); with neither id, Unleash's ``default`` stickiness
    buckets each evaluation at random, so anonymous traffic spreads across a percentage rollout instead of
    landing in one bucket. A rollout whose stickiness names ``userId`` explicitly is *off* for every
    anonymous request -- use ``default`` stickiness for traffic that may be anonymous.

    ``tenant`` becomes the custom property ``tenantId`` (for constraints such as "tenant in [acme]").
    ``remote_address`` is passed for Unleash's ``remoteAddress`` (IP allow-list) strategy; it does not
    influence stickiness. The context is evaluated in-process and never sent to the Unleash server
    (metrics carry only per-flag counts).
    """

    user_id: str | None = None
    session_id: str | None = None
    tenant: str | None = None
    remote_address: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_request(
        cls,
        *,
        user: object = None,
        headers: Mapping[str, str] | None = None,
        tenant: str | None = None,
        remote_address: str | None = None,
    ) -> FlagContext:
        """Build the context from a chat-completion request.

        ``user`` is the body's OpenAI ``user`` field; ``headers`` a mapping with lower-case keys (ASGI /
        Starlette headers are). The ``x-rollguard-user`` header wins over ``user`` (it is the explicit,
        rollguard-specific one); ``x-rollguard-session`` gives the session id. Ids are cleaned by the
        rules in the class docstring.
        """
        hdrs = headers or {}
        user_id = clean_id(hdrs.get(USER_HEADER)) or clean_id(user)
        return cls(
            user_id=user_id,
            session_id=clean_id(hdrs.get(SESSION_HEADER)),
            tenant=clean_id(tenant),
            remote_address=clean_id(remote_address),
        )

    def to_unleash(self) -> dict[str, Any]:
        """The context dict handed to the Unleash client. Keys appear only with a value:
        ``userId``, ``sessionId``, ``remoteAddress``, ``properties`` (``tenantId`` plus ``properties``)."""
        ctx: dict[str, Any] = {}
        user_id = clean_id(self.user_id)
        if user_id is not None:
            ctx["userId"] = user_id
        session_id = clean_id(self.session_id)
        if session_id is not None:
            ctx["sessionId"] = session_id
        remote = clean_id(self.remote_address)
        if remote is not None:
            ctx["remoteAddress"] = remote
        props = {k: v for k, v in self.properties.items() if clean_id(v) is not None}
        tenant = clean_id(self.tenant)
        if tenant is not None:
            props[TENANT_PROPERTY] = tenant
        if props:
            ctx["properties"] = props
        return ctx
