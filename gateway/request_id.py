"""``x-request-id`` and ``x-rollguard-config-version`` on every response.

The request id is the client's ``x-request-id`` when it is a plain opaque id (``VALID``: 1-128
characters of letters, digits and ``._:-`` with at least one letter; no ``@`` or spaces, so an
e-mail address, a sentence or a bare number such as a card or phone number is never echoed or
logged), else a new one (``rg-`` + 32 hex digits). It is echoed in the response
header, kept in ``scope["state"]["request_id"]`` for the route (the audit record's ``request_id``)
and in ``CURRENT`` for log lines (``install_log_field``: ``%(request_id)s``, ``-`` outside a request).

``stamp`` wraps an ASGI ``send`` and adds both headers to the response start: one closure per
request, no per-chunk work.
"""

from __future__ import annotations

import logging
import os
import re
from contextvars import ContextVar
from typing import Any

from starlette.types import Message, Scope, Send

HEADER = "x-request-id"
CONFIG_VERSION_HEADER = "x-rollguard-config-version"
VALID = re.compile(rb"(?=[^A-Za-z]*[A-Za-z])[A-Za-z0-9._:\-]{1,128}")
CURRENT: ContextVar[str] = ContextVar("rollguard_request_id", default="-")
_HEADER_B = HEADER.encode()
_VERSION_B = CONFIG_VERSION_HEADER.encode()
_DROP = frozenset({_HEADER_B, _VERSION_B})


def request_id_of(scope: Scope) -> str:
    """The request's id: the client's valid ``x-request-id``, else a new ``rg-<hex>``."""
    for name, value in scope.get("headers") or ():
        if name == _HEADER_B:
            if VALID.fullmatch(value):
                return bytes(value).decode()
            break
    return "rg-" + os.urandom(16).hex()  # uuid4().hex's randomness at a fifth of its cost


def stamp(send: Send, request_id: str, config_version: str) -> Send:
    """``send`` adding ``x-request-id`` and ``x-rollguard-config-version`` to the response start
    (replacing any set by the route)."""
    extra = [(_HEADER_B, request_id.encode()), (_VERSION_B, config_version.encode())]

    async def stamped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers") or () if h[0].lower() not in _DROP]
            message = {**message, "headers": headers + extra}
        await send(message)

    return stamped


_installed = False


def install_log_field() -> None:
    """Give every log record a ``request_id`` attribute (``CURRENT``) so formats may use
    ``%(request_id)s``. Idempotent; wraps the current record factory."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = CURRENT.get()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
