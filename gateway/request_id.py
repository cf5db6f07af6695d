"""``x-request-id`` and ``x-rollguard-config-version`` on every response.

The request id is the client's ``x-request-id`` when it is a plain opaque id, else a new one
(``rg-`` + 32 hex digits). Plain (``client_id_ok``): 1-128 characters of letters, digits and
``._:-`` with at least one letter (``VALID``: no ``@`` or spaces, so no e-mail address or sentence),
no run of 7 or more digits once the separators ``._:-`` are removed (``card-4111111111111111``,
``ssn.123-45-6789``, ``tel:+1-415-555-2671``: every card, phone number, SSN and IBAN has one),
and nothing the ``pii`` policy's recognisers find
(``policies.builtin.pii_entities.PiiFinder``) or ``ipaddress`` reads as an IPv6 address, also where
letters are glued to the value (``ip10.0.0.1``, ``ssnfe80::1z``). One exception: a canonical UUID
(``8-4-4-4-12`` hex digits with its version and variant nibbles, the common request id) is random
and can hold no ``@``, dot or ``::``, so it is echoed even when a group is all digits. So the
client's id never carries personal data into the response, the logs or the audit record. It is
echoed in the response header, kept in ``scope["state"]["request_id"]`` for the route (the audit
record's ``request_id``) and in ``CURRENT`` for log lines (``install_log_field``:
``%(request_id)s``, ``-`` outside a request).

``stamp`` wraps an ASGI ``send`` and adds both headers to the response start: one closure per
request, no per-chunk work.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import os
import re
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from starlette.types import Message, Scope, Send

HEADER = "x-request-id"
CONFIG_VERSION_HEADER = "x-rollguard-config-version"
VALID = re.compile(rb"(?=[^A-Za-z]*[A-Za-z])[A-Za-z0-9._:\-]{1,128}")
_SEPARATORS = re.compile(rb"[._:\-]")
_DIGIT_RUN = re.compile(rb"[0-9]{7,}")
_HEX_COLON_RUN = re.compile(rb"[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*")
_LETTER_DIGIT = re.compile(rb"([A-Za-z])(?=[0-9])|([0-9])(?=[A-Za-z])")
_UUID = re.compile(
    rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
)
CURRENT: ContextVar[str] = ContextVar("rollguard_request_id", default="-")
_HEADER_B = HEADER.encode()
_VERSION_B = CONFIG_VERSION_HEADER.encode()
_DROP = frozenset({_HEADER_B, _VERSION_B})


def request_id_of(scope: Scope) -> str:
    """The request's id: the client's valid ``x-request-id``, else a new ``rg-<hex>``."""
    for name, value in scope.get("headers") or ():
        if name == _HEADER_B:
            if client_id_ok(value):
                return bytes(value).decode()
            break
    return "rg-" + os.urandom(16).hex()  # uuid4().hex's randomness at a fifth of its cost


def client_id_ok(value: bytes) -> bool:
    """True when a client's ``x-request-id`` may be echoed, logged and stored (the module's rules:
    ``VALID``, no 7-digit run without separators unless a UUID, nothing ``PiiFinder`` finds). About
    10 us for a 36-character id (the recognisers run only on ids that passed the cheap checks)."""
    if _UUID.fullmatch(value):  # before VALID: a UUID may hold no letter at all
        return True
    if not VALID.fullmatch(value):
        return False
    if _DIGIT_RUN.search(_SEPARATORS.sub(b"", value)):
        return False
    finder = _pii_finder()
    # As sent, with letters and digits apart (``ip10.0.0.1``), and with separators as spaces.
    views = (value, _LETTER_DIGIT.sub(rb"\1 \2", value), _SEPARATORS.sub(b" ", value))
    return not any(finder(view.decode()) for view in views) and not _holds_ipv6(value)


def _holds_ipv6(value: bytes) -> bool:
    """True when a run of hex digits, colons and dots with two or more colons, cut at most 4
    characters from either end (``ssnfe80::1z``: hex letters glued to the address), is an IPv6
    address (``ipaddress``); at most 25 parses per run."""
    for match in _HEX_COLON_RUN.finditer(value):
        run = match.group().decode()
        for start in range(min(5, len(run))):
            for end in range(len(run), max(start, len(run) - 5), -1):
                with contextlib.suppress(ValueError):
                    ipaddress.IPv6Address(run[start:end])
                    return True
    return False


@functools.cache
def _pii_finder() -> Callable[[str], list[Any]]:
    from policies.builtin.pii_entities import PiiFinder

    return PiiFinder()


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
