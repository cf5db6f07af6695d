"""Binary-to-text encodings: find spans, decode them with the standard library (``base64``,
``binascii``) or a pinned, MIT/Apache-licensed package (``base2048``, ``ecoji``), keep a decoding
only when it is readable text.

Every decoder has the shape ``decode_x(text, limit) -> str | None``: ``text`` with each decodable
span replaced by its decoding (framing kept, so "Decode this: <payload>" becomes "Decode this:
<decoded>"), or ``None`` when no span decodes to text. ``limit`` bounds the characters of one
span that are decoded (a longer span is decoded from its first ``limit`` characters, cut on the
encoding's block size), so a 1 MB payload costs what a ``limit``-sized one costs.

Benign encoded data stays out: a data URI of an image, a hash, a UUID or a hex dump of binary
decodes to bytes that are not readable text (``readable``) and yields no view.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Callable

import base2048
import ecoji

__all__ = ["BINARY_CODECS", "CLOSE", "OPEN", "readable"]

OPEN, CLOSE = "\x02", "\x03"
"""Markers (STX / ETX) around each decoded span in a decoder's output, so ``views`` can also judge
the decoded payload alone, apart from its framing. Removed from the input before decoding."""


def readable(raw: bytes) -> str | None:
    """``raw`` as UTF-8 text when it is at least 4 characters, 95 % printable (newlines and tabs
    count) and at least 40 % letters among its non-space characters; else ``None``. A decoded
    image, hash or key is not readable."""
    try:
        out = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    n = len(out)
    if n < 4:
        return None
    printable = sum(1 for c in out if c.isprintable() or c in "\n\t\r")
    dense = out.replace(" ", "")
    letters = sum(1 for c in dense if c.isalpha())
    if printable < 0.95 * n or letters < 0.4 * len(dense):
        return None
    return out


Span = re.Match[str]


def _substitute(pattern: re.Pattern[str], text: str, decode: Callable[[str], str | None]) -> str | None:
    changed = False

    def repl(m: Span) -> str:
        nonlocal changed
        out = decode(m.group(0))
        if out is None:
            return m.group(0)
        changed = True
        return f" {OPEN}{out}{CLOSE} "

    result = pattern.sub(repl, text)
    return result if changed else None


_B64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")


def decode_base64(text: str, limit: int) -> str | None:
    """Standard and URL-safe base64 (RFC 4648 sections 4-5) runs of 16+ characters; padding
    optional. A run of letters only in one case is a word, not a payload."""

    def one(token: str) -> str | None:
        body = token.rstrip("=")
        if body.isalpha() and (body.islower() or body.isupper()):
            return None
        body = body[: limit - limit % 4]
        body = body.replace("-", "+").replace("_", "/")
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None
        return readable(raw)

    return _substitute(_B64, text, one)


_B32 = re.compile(r"(?<![A-Za-z0-9=])[A-Z2-7]{16,}={0,6}(?![A-Za-z0-9=])")


def decode_base32(text: str, limit: int) -> str | None:
    """Base32 (RFC 4648 section 6) runs of 16+ upper-case characters; padding optional."""

    def one(token: str) -> str | None:
        body = token.rstrip("=")[: limit - limit % 8]
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
        except (binascii.Error, ValueError):
            return None
        return readable(raw)

    return _substitute(_B32, text, one)


_HEX = re.compile(r"(?<![0-9A-Za-z\\])(?:(?:\\x|0x)?[0-9A-Fa-f]{2}[ :,]?){8,}")
_HEX_SEP = re.compile(r"\\x|0x|[ :,]")


def decode_hex(text: str, limit: int) -> str | None:
    """Base16 / hex: 8+ byte pairs, bare or as ``\\xNN`` / ``0xNN``, optionally separated by a
    space, colon or comma."""

    def one(token: str) -> str | None:
        digits = _HEX_SEP.sub("", token)[:limit]
        digits = digits[: len(digits) - len(digits) % 2]
        try:
            return readable(bytes.fromhex(digits))
        except ValueError:
            return None

    return _substitute(_HEX, text, one)


_A85 = re.compile(r"<~[!-uz\s]{4,}?~>")
_A85_BARE = re.compile(r"(?<=[:\s])[!-uz]{20,}(?=\s|$)")
_A85_CUE = re.compile(r"(?i)ascii[\s_-]?85|base[\s_-]?85|a85")


def decode_ascii85(text: str, limit: int) -> str | None:
    """Ascii85: Adobe-framed ``<~ ... ~>`` spans always; bare runs of 20+ characters only when the
    text names ascii85/base85 (the alphabet is most of printable ASCII)."""

    def one(token: str) -> str | None:
        body = token[:limit]
        adobe = body.startswith("<~") and body.endswith("~>")
        tries: list[Callable[[], bytes]] = (
            [lambda: base64.a85decode(body, adobe=True)]
            if adobe
            else [lambda: base64.a85decode(body.strip()), lambda: base64.b85decode(body.strip())]
        )
        for attempt in tries:
            try:
                raw = attempt()
            except (binascii.Error, ValueError):
                continue
            out = readable(raw)
            if out is not None:
                return out
        return None

    out = _substitute(_A85, text, one) if "<~" in text else None  # ``_A85`` starts with ``<~``
    if _A85_CUE.search(text):
        return _substitute(_A85_BARE, out or text, one) or out
    return out


_UU = re.compile(r"\bbegin [0-7]{3} [^\n]*\n((?:[^\n]*\n)*?)(?:`\n)?end\b")


def decode_uu(text: str, limit: int) -> str | None:
    """uuencode (POSIX ``uuencode`` format: ``begin MODE NAME``, lines, ``end``), line by line with
    ``binascii.a2b_uu``."""

    if "begin " not in text:  # ``_UU`` starts with ``begin ``: no scan of the text for nothing
        return None

    def one(block: str) -> str | None:
        raw = bytearray()
        for line in block[:limit].split("\n")[1:]:
            line = line.rstrip("\r")
            if not line or line.startswith("end") or line == "`":
                continue
            try:
                raw += binascii.a2b_uu(line)
            except binascii.Error:
                return None
        return readable(bytes(raw))

    return _substitute(_UU, text, one)


_B2048 = re.compile(r"[^\x00-\x7f\s]{8,}")


def decode_base2048(text: str, limit: int) -> str | None:
    """Base2048 (qntm's scheme, via the MIT ``base2048`` package): runs of 8+ non-ASCII,
    non-space characters that decode."""

    def one(token: str) -> str | None:
        try:
            raw = base2048.decode(token[:limit])
        except Exception:
            return None
        return readable(raw)

    return _substitute(_B2048, text, one)


_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f\u200d]{4,}")


def _base100(token: str) -> bytes | None:
    """Base100 (AdamNiederer/base100 spec): byte ``b`` is the emoji U+1F3F7 + b."""
    raw = bytearray()
    for c in token:
        b = ord(c) - 0x1F3F7
        if not 0 <= b <= 255:
            return None
        raw.append(b)
    return bytes(raw)


def decode_emoji(text: str, limit: int) -> str | None:
    """Emoji encodings: Ecoji (Apache-2.0 ``ecoji`` package) and Base100, on runs of 4+ emoji."""

    def one(token: str) -> str | None:
        token = token[:limit]
        raw = _base100(token)
        if raw is not None:
            return readable(raw)
        sink = io.BytesIO()
        try:
            ecoji.decode(io.StringIO(token), sink)
        except Exception:
            return None
        return readable(sink.getvalue())

    return _substitute(_EMOJI, text, one)


BINARY_CODECS: tuple[tuple[str, Callable[[str, int], str | None]], ...] = (
    ("base64", decode_base64),
    ("base32", decode_base32),
    ("hex", decode_hex),
    ("ascii85", decode_ascii85),
    ("uuencode", decode_uu),
    ("base2048", decode_base2048),
    ("emoji", decode_emoji),
)
"""``(encoding name, decoder)`` in the order they are tried."""
