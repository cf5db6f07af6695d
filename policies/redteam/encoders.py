"""Encoders for the red-team set: the other side of ``policies.decoding`` (standard library,
``base2048``, ``ecoji``; fixed public tables for Morse, NATO, Braille, Unicode tags)."""

from __future__ import annotations

import base64
import binascii
import codecs
import io
import random
from collections.abc import Callable

import base2048
import ecoji

from policies.decoding.ciphers import MORSE_TABLE

__all__ = ["ENCODERS", "selectors", "tags"]

_MORSE = {char: code for code, char in MORSE_TABLE.items() if char.isalnum()}
_NATO = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        [
            "Alfa",
            "Bravo",
            "Charlie",
            "Delta",
            "Echo",
            "Foxtrot",
            "Golf",
            "Hotel",
            "India",
            "Juliett",
            "Kilo",
            "Lima",
            "Mike",
            "November",
            "Oscar",
            "Papa",
            "Quebec",
            "Romeo",
            "Sierra",
            "Tango",
            "Uniform",
            "Victor",
            "Whiskey",
            "Xray",
            "Yankee",
            "Zulu",
        ],
        strict=True,
    )
)
_BRAILLE = dict(zip("abcdefghijklmnopqrstuvwxyz", "⠁⠃⠉⠙⠑⠋⠛⠓⠊⠚⠅⠇⠍⠝⠕⠏⠟⠗⠎⠞⠥⠧⠺⠭⠽⠵", strict=True))
_LEET = str.maketrans({"o": "0", "i": "1", "e": "3", "a": "4", "s": "5", "t": "7"})
_L = "abcdefghijklmnopqrstuvwxyz"
_ATBASH = str.maketrans(_L + _L.upper(), _L[::-1] + _L.upper()[::-1])


def _words(text: str) -> list[str]:
    return ["".join(c for c in w.lower() if c.isalnum()) for w in text.split()]


def morse(text: str, r: random.Random) -> str:
    """Letters by one space; words by `` / `` (the common form), `` | ``, three spaces, or a new line;
    one style in five uses the typographic middle dot and minus sign (``·−``)."""
    sep = r.choice((" / ", " / ", " | ", "   ", "\n"))
    out = sep.join(" ".join(_MORSE[c] for c in w if c in _MORSE) for w in _words(text))
    return out.replace(".", "\u00b7").replace("-", "\u2212") if r.random() < 0.2 else out


def nato(text: str, r: random.Random) -> str:
    """Code words by one space (or a hyphen, or a comma); words by `` / ``, a new line or ``(space)``."""
    sep = r.choice((" / ", " / ", "\n", " (space) "))
    inner = r.choice((" ", " ", "-", ", "))
    words = (inner.join(_NATO[c] for c in w if c in _NATO) for w in _words(text))
    out = sep.join(words)
    return out.upper() if r.random() < 0.25 else out


def braille(text: str, r: random.Random) -> str:
    return "⠀".join("".join(_BRAILLE[c] for c in w if c in _BRAILLE) for w in _words(text))


def tags(text: str) -> str:
    """``text`` as invisible Unicode tag characters (U+E0020-U+E007E)."""
    return "".join(chr(0xE0000 + ord(c)) for c in text if 0x20 <= ord(c) <= 0x7E)


def selectors(text: str) -> str:
    """``text``'s UTF-8 bytes as variation selectors (byte < 16: U+FE00 + b; else U+E0100 + b - 16),
    invisible after the emoji they follow ("emoji smuggling")."""
    return "".join(chr(0xFE00 + b) if b < 16 else chr(0xE0100 + b - 16) for b in text.encode())


def zalgo(text: str, r: random.Random) -> str:
    """Combining marks on every letter: a flood of 3-6 (the classic), or a light 1-2 in one case of
    three (no run of three marks anywhere)."""
    marks = [chr(c) for c in range(0x0300, 0x0370)]
    low, high = (1, 2) if r.random() < 0.34 else (3, 6)
    return "".join(
        c + "".join(r.choice(marks) for _ in range(r.randint(low, high))) if c.isalpha() else c for c in text
    )


def uu(text: str, r: random.Random) -> str:
    raw = text.encode()
    lines = "".join(binascii.b2a_uu(raw[i : i + 45]).decode() for i in range(0, len(raw), 45))
    name = r.choice(("note.txt", "msg", "secret.txt", "a.bin"))
    return f"begin {r.choice(('644', '600', '666'))} {name}\n{lines}`\nend\n"


def ecoji_encode(text: str, r: random.Random) -> str:
    out = io.StringIO()
    ecoji.encode(io.BytesIO(text.encode()), out, wrap=0)
    return out.getvalue().strip()


_LETTER_BLOCKS = (0x1F1E6, 0x1F130, 0x1F170, 0x24B6)
"""Regional indicators, squared, negative squared and circled capital letters (A at each base)."""


def regional(text: str, r: random.Random) -> str:
    base = r.choice(_LETTER_BLOCKS)
    return " ".join("".join(chr(base + ord(c) - 97) for c in w if "a" <= c <= "z") for w in _words(text))


def hex_encode(text: str, r: random.Random) -> str:
    raw = text.encode()
    style = r.randrange(6)
    if style == 0:
        return raw.hex()
    if style == 1:
        return " ".join(f"{b:02x}" for b in raw)
    if style == 2:
        return "".join(f"\\x{b:02x}" for b in raw)
    if style == 3:
        return " ".join(f"0x{b:02X}" for b in raw)
    if style == 4:
        return ", ".join(f"0x{b:02x}" for b in raw)
    return "\n".join(raw[i : i + 16].hex(" ").upper() for i in range(0, len(raw), 16))


def _wrap(encoded: str, r: random.Random) -> str:
    """One line (half the time), MIME's 76 columns, or an arbitrary width (pasted from a terminal)."""
    style = r.randrange(4)
    if style < 2 or len(encoded) <= 40:
        return encoded
    width = 76 if style == 2 else r.randint(30, 70)
    return "\n".join(encoded[i : i + width] for i in range(0, len(encoded), width))


def b64(text: str, r: random.Random) -> str:
    raw = text.encode()
    out = base64.urlsafe_b64encode(raw) if r.random() < 0.15 else base64.b64encode(raw)
    return _wrap(out.decode(), r)


def b32(text: str, r: random.Random) -> str:
    out = base64.b32encode(text.encode()).decode()
    if r.random() < 0.3:
        out = out.rstrip("=")
    return _wrap(out, r)


def a85(text: str, r: random.Random) -> str:
    return _wrap(base64.a85encode(text.encode(), adobe=r.random() < 0.5).decode(), r)


def leet(text: str, r: random.Random) -> str:
    """Lower-case leetspeak (half the time), or with random capitals (``1gN0r3 4lL``)."""
    out = text.lower().translate(_LEET)
    if r.random() < 0.5:
        return out
    return "".join(c.upper() if c.isalpha() and r.random() < 0.4 else c for c in out)


ENCODERS: dict[str, Callable[[str, random.Random], str]] = {
    "base64": b64,
    "base32": b32,
    "hex": hex_encode,
    "ascii85": a85,
    "uuencode": uu,
    "rot13": lambda t, r: codecs.encode(t, "rot13"),
    "atbash": lambda t, r: t.translate(_ATBASH),
    "morse": morse,
    "nato": nato,
    "braille": braille,
    "base2048": lambda t, r: base2048.encode(t.encode()),
    "ecoji": ecoji_encode,
    "base100": lambda t, r: "".join(chr(0x1F3F7 + b) for b in t.encode()),
    "zalgo": zalgo,
    "leetspeak": leet,
    "regional_letters": regional,
    "unicode_tags": lambda t, r: tags(t),
    "variation_selectors": lambda t, r: r.choice("😊🙂👍🌟🔥") + selectors(t),
}
"""Encoding name -> ``(text, rng) -> encoded text``."""

NAMES = {
    "base64": "base64",
    "base32": "base32",
    "hex": "hex",
    "ascii85": "ascii85",
    "uuencode": "uuencoded",
    "rot13": "ROT13",
    "atbash": "Atbash cipher",
    "morse": "Morse code",
    "nato": "NATO alphabet",
    "braille": "Braille",
    "base2048": "base2048",
    "ecoji": "emoji code",
    "base100": "emoji code",
    "zalgo": "glitch text",
    "leetspeak": "leetspeak",
    "regional_letters": "emoji letters",
    "unicode_tags": "invisible text",
    "variation_selectors": "emoji",
}
"""How a framing names each encoding."""
