"""Binary blobs in text: data URIs and long base64 / hex runs that do not decode to readable text
(images, archives, keys, hashes). They carry no instruction a model could follow as text, yet a
text classifier reads their random letters as an adversarial suffix. ``mask_binary`` replaces
each with one neutral token before a classifier scores the text; a run that decodes to readable
text is kept (the pipeline's decoded views judge it).
"""

from __future__ import annotations

import base64
import binascii
import re

from policies.decoding.codecs import readable
from policies.native import module as native_module

__all__ = ["mask_binary"]

_BLOB = re.compile(
    r"data:[\w.+/-]{1,64}(?:;[\w=.-]+)*;base64,[A-Za-z0-9+/=\s]{16,}"
    r"|(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{64,}={0,2}(?![A-Za-z0-9+/=_-])"
)
_QUICK = re.compile(r"[A-Za-z0-9+/_=-]{64,}|;base64,")
_NATIVE = native_module()
"""``policies._native`` (``blob_candidate``: ``_QUICK``'s search, compiled), or ``None``."""
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_SAMPLE = 256
"""Characters of a run decoded to decide whether it is readable text."""


def _is_text(run: str) -> bool:
    body = run.split(",", 1)[1] if run.startswith("data:") else run
    body = re.sub(r"\s+", "", body).rstrip("=")[:_SAMPLE]
    if all(c in _HEX_DIGITS for c in body):  # hex is also valid base64: try it first
        return readable(bytes.fromhex(body[: len(body) - len(body) % 2])) is not None
    body = body[: len(body) - len(body) % 4]
    try:
        raw = base64.b64decode(body.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return readable(raw) is not None


def mask_binary(text: str, token: str = " x ") -> str:  # noqa: S107 - a neutral word, not a secret
    """``text`` with every data URI and every base64 run of 64+ characters that does not decode
    to readable text replaced by ``token``. One regex search when there is none; O(len(text))."""
    if not (_NATIVE.blob_candidate(text) if _NATIVE is not None else _QUICK.search(text) is not None):
        return text
    return _BLOB.sub(lambda m: m.group(0) if _is_text(m.group(0)) else token, text)
