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

__all__ = ["ENCODERS", "tags"]

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
    return " / ".join(" ".join(_MORSE[c] for c in w if c in _MORSE) for w in _words(text))


def nato(text: str, r: random.Random) -> str:
    return " / ".join(" ".join(_NATO[c] for c in w if c in _NATO) for w in _words(text))


def braille(text: str, r: random.Random) -> str:
    return "⠀".join("".join(_BRAILLE[c] for c in w if c in _BRAILLE) for w in _words(text))


def tags(text: str) -> str:
    """``text`` as invisible Unicode tag characters (U+E0020-U+E007E)."""
    return "".join(chr(0xE0000 + ord(c)) for c in text if 0x20 <= ord(c) <= 0x7E)


def zalgo(text: str, r: random.Random) -> str:
    marks = [chr(c) for c in range(0x0300, 0x0370)]
    return "".join(
        c + "".join(r.choice(marks) for _ in range(r.randint(3, 6))) if c.isalpha() else c for c in text
    )


def uu(text: str, r: random.Random) -> str:
    raw = text.encode()
    lines = "".join(binascii.b2a_uu(raw[i : i + 45]).decode() for i in range(0, len(raw), 45))
    return f"begin 644 note.txt\n{lines}`\nend\n"


def ecoji_encode(text: str, r: random.Random) -> str:
    out = io.StringIO()
    ecoji.encode(io.BytesIO(text.encode()), out, wrap=0)
    return out.getvalue().strip()


def regional(text: str, r: random.Random) -> str:
    return " ".join("".join(chr(0x1F1E6 + ord(c) - 97) for c in w if "a" <= c <= "z") for w in _words(text))


def hex_encode(text: str, r: random.Random) -> str:
    raw = text.encode()
    style = r.randrange(3)
    if style == 0:
        return raw.hex()
    if style == 1:
        return " ".join(f"{b:02x}" for b in raw)
    return "".join(f"\\x{b:02x}" for b in raw)


ENCODERS: dict[str, Callable[[str, random.Random], str]] = {
    "base64": lambda t, r: base64.b64encode(t.encode()).decode(),
    "base32": lambda t, r: base64.b32encode(t.encode()).decode(),
    "hex": hex_encode,
    "ascii85": lambda t, r: base64.a85encode(t.encode(), adobe=r.random() < 0.5).decode(),
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
    "leetspeak": lambda t, r: t.lower().translate(_LEET),
    "regional_letters": regional,
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
}
"""How a framing names each encoding."""
