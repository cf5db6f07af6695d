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
import re
from collections.abc import Callable

import base2048
from ecoji.mapping import EMOJI2BYTE, PADDING, PADDING40, PADDING41, PADDING42, PADDING43

__all__ = ["BINARY_CODECS", "CLOSE", "OPEN", "decimal_only_hex", "readable"]

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


def _unwrap(pattern: re.Pattern[str], text: str) -> str:
    """``text`` with each block of ``pattern`` (lines of one alphabet, as an encoder or a mail
    client wraps them at 76 or any width) joined into one line, so the run decodes whole."""
    if "\n" not in text:
        return text
    return pattern.sub(lambda m: "".join(m.group(0).split()), text)


_B64_WRAPPED = re.compile(
    r"(?<![A-Za-z0-9+/=_-])(?:[A-Za-z0-9+/_-]{16,}[ \t]*\r?\n)+[A-Za-z0-9+/_-]+={0,2}(?=[ \t]*(?:\r?\n|$))"
)
"""Lines of 16+ base64 characters (no padding but on the last line), each a whole line."""
_B32_WRAPPED = re.compile(
    r"(?<![A-Za-z0-9=])(?:[A-Z2-7]{16,}[ \t]*\r?\n)+[A-Z2-7]+={0,6}(?=[ \t]*(?:\r?\n|$))"
)

_B64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")


def decode_base64(text: str, limit: int) -> str | None:
    """Standard and URL-safe base64 (RFC 4648 sections 4-5) runs of 16+ characters; padding
    optional; wrapped lines joined first (``_unwrap``). A run of letters only in one case is a
    word, not a payload."""

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

    return _substitute(_B64, _unwrap(_B64_WRAPPED, text), one)


_B32 = re.compile(r"(?<![A-Za-z0-9=])[A-Z2-7]{16,}={0,6}(?![A-Za-z0-9=])")


def decode_base32(text: str, limit: int) -> str | None:
    """Base32 (RFC 4648 section 6) runs of 16+ upper-case characters; padding optional; wrapped
    lines joined first."""

    def one(token: str) -> str | None:
        body = token.rstrip("=")[: limit - limit % 8]
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
        except (binascii.Error, ValueError):
            return None
        return readable(raw)

    return _substitute(_B32, _unwrap(_B32_WRAPPED, text), one)


_HEX = re.compile(r"(?<![0-9A-Za-z\\])(?:(?:\\x|0[xX])?[0-9A-Fa-f]{2}(?:, |[ :,]|\r?\n)?){8,}")
_HEX_SEP = re.compile(r"\\x|0[xX]|[\s:,]")


def decimal_only_hex(token: str, digits: str) -> bool:
    """True when a hex candidate ``token`` (its hex ``digits`` without separators) is no hex
    evidence: every digit is a decimal one and no ``\\x`` / ``0x`` marks it as hex. Numbers
    (a CSV, a table, phone numbers) look like byte pairs, and their pairs 41-59 and 61-79 read as
    letters; but text whose hex has no digit a-f can spell no ``j``-``o`` or ``z`` in either case,
    no ``.``, ``,``, ``?`` or line break ("ignore", "prompt", "only" all need one): such a run is
    numbers, not an encoded instruction."""
    return not any(c in "abcdefABCDEF" for c in digits) and "\\x" not in token and "0x" not in token.lower()


def decode_hex(text: str, limit: int) -> str | None:
    """Base16 / hex: 8+ byte pairs, bare or as ``\\xNN`` / ``0xNN`` / ``0XNN``, optionally separated
    by a space, colon, comma, ``", "`` or a line break (a dump wrapped at 16 bytes a line). A run of
    decimal digits alone is numbers, not hex (``decimal_only_hex``)."""

    def one(token: str) -> str | None:
        digits = _HEX_SEP.sub("", token)[:limit]
        if decimal_only_hex(token, digits):
            return None
        digits = digits[: len(digits) - len(digits) % 2]
        try:
            return readable(bytes.fromhex(digits))
        except ValueError:
            return None

    return _substitute(_HEX, text, one)


_A85 = re.compile(r"<\s*~[!-uz\s]{4,}?~\s*>")
_A85_BARE = re.compile(r"(?<![!-~])[!-uz]{20,}(?![!-~])")
_A85_WRAPPED = re.compile(r"(?<![!-~])(?:[!-uz]{20,}[ \t]*\r?\n)+[!-uz]+(?=[ \t]*(?:\r?\n|$))")


def decode_ascii85(text: str, limit: int) -> str | None:
    """Ascii85: Adobe-framed ``<~ ... ~>`` spans, and bare runs of 20+ characters of its alphabet
    (wrapped lines joined first). The alphabet is most of printable ASCII, so a bare run of words,
    a URL or code rarely decodes at all, and what does must still be ``readable`` (a random
    4-character group gives 4 bytes that are 95 % printable with probability ~0.1, a 20-character
    run 5 groups)."""

    def one(token: str) -> str | None:
        body = "".join(token.split())[:limit]  # whitespace is no part of the encoding
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

    out = _substitute(_A85, text, one) if "~" in text else None  # ``_A85`` needs ``<~ ... ~>``
    return _substitute(_A85_BARE, _unwrap(_A85_WRAPPED, out or text), one) or out


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
        raw = _ecoji_decode(token)
        return readable(raw) if raw is not None else None

    return _substitute(_EMOJI, text, one)


_ECOJI_TAIL = {PADDING40: 0, PADDING41: 1 << 8, PADDING42: 2 << 8, PADDING43: 3 << 8}


def _ecoji_decode(token: str) -> bytes | None:
    """Ecoji v1 (the spec of the ``ecoji`` package's tables: 4 emoji carry 5 bytes, ``PADDING``
    fills short groups, ``PADDING40``-``43`` carry the 2 low bits of a 4-byte group's last byte).
    The package's own ``decode`` (0.1.1) loses those 2 bits (an ``if`` chain whose ``else``
    overwrites PADDING40-42: "You are a zzzy" came back "... zzzx"). ``None`` when a character is
    not an Ecoji emoji (variation selectors and joiners are skipped)."""
    emojis = [c for c in token if c not in "\ufe0f\u200d"]
    out = bytearray()
    for i in range(0, len(emojis), 4):
        group = emojis[i : i + 4] + [PADDING] * (4 - len(emojis[i : i + 4]))
        if any(c not in EMOJI2BYTE and c != PADDING and c not in _ECOJI_TAIL for c in group):
            return None
        b0, b1, b2 = (EMOJI2BYTE.get(c, 0) for c in group[:3])
        last = group[3]
        b3 = _ECOJI_TAIL[last] if last in _ECOJI_TAIL else EMOJI2BYTE.get(last, 0)
        five = bytes(
            [
                b0 >> 2,
                (b0 & 0x3) << 6 | b1 >> 4,
                (b1 & 0xF) << 4 | b2 >> 6,
                (b2 & 0x3F) << 2 | b3 >> 8,
                b3 & 0xFF,
            ]
        )
        if group[1] == PADDING:
            five = five[:1]
        elif group[2] == PADDING:
            five = five[:2]
        elif last == PADDING:
            five = five[:3]
        elif last in _ECOJI_TAIL:
            five = five[:4]
        out += five
    return bytes(out)


_SELECTORS = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]{4,}")


def _selector_byte(c: str) -> int:
    o = ord(c)
    return o - 0xFE00 if o <= 0xFE0F else o - 0xE0100 + 16


def decode_variation_selectors(text: str, limit: int) -> str | None:
    """Bytes hidden in Unicode variation selectors after a visible character ("emoji
    smuggling"): VS1-VS16 (U+FE00-FE0F) carry bytes 0-15, VS17-VS256 (U+E0100-E01EF) bytes
    16-255, one selector per byte. A run of 4+ selectors (an emoji takes at most one) that decodes
    to readable text."""

    def one(token: str) -> str | None:
        return readable(bytes(_selector_byte(c) for c in token[:limit]))

    return _substitute(_SELECTORS, text, one)


BINARY_CODECS: tuple[tuple[str, Callable[[str, int], str | None]], ...] = (
    ("base64", decode_base64),
    ("base32", decode_base32),
    ("hex", decode_hex),
    ("ascii85", decode_ascii85),
    ("uuencode", decode_uu),
    ("base2048", decode_base2048),
    ("emoji", decode_emoji),
    ("variation_selectors", decode_variation_selectors),
)
"""``(encoding name, decoder)`` in the order they are tried."""
