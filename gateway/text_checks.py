"""Strings a client sends that are not Unicode text: lone UTF-16 surrogates.

JSON allows the escape ``"\\ud800"`` without its pair; Python's ``json`` reader (the one FastAPI
uses for the bodies it parses) turns it into the code point U+D800, which no UTF-8 encoder
accepts (the Unicode Standard, 3.9, D92), so Redis, the logs and the upstream would all fail on it
later, as a 500. The chat body is read with orjson, which refuses such escapes itself
(``gateway.chat_request``); the review bodies use ``ValidText``; the error boundary
(``gateway.errors``) answers 400 for any that slip through (``is_lone_surrogate``).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

LONE_SURROGATE = (
    "a string in the request holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its "
    "pair), which is not a Unicode character; send valid Unicode text"
)
_SURROGATES = re.compile(r"[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    """True when ``text`` holds a code point U+D800..U+DFFF (what an unpaired escape becomes; a
    paired escape becomes the real character)."""
    return _SURROGATES.search(text) is not None


def is_lone_surrogate(exc: BaseException) -> bool:
    """True for the ``UnicodeEncodeError`` raised when a string holding a lone surrogate is
    encoded (client data: nothing in the gateway makes such strings)."""
    return isinstance(exc, UnicodeEncodeError) and "surrogate" in str(exc.reason)


def _valid_text(value: str) -> str:
    if has_lone_surrogate(value):
        raise ValueError(LONE_SURROGATE)
    return value


ValidText = Annotated[str, AfterValidator(_valid_text)]
"""A pydantic ``str`` field that refuses lone surrogates (a ``RequestValidationError``: 400)."""
