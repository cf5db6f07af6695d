"""The fast pre-scan: says whether a text *may* carry an encoded span, with substring tests and a
few small regular expressions guarded by character tests (one alternation of everything was
measured ~25x slower: Python's ``re`` tries every case-insensitive alternative at every position).
Only a hit pays for the per-encoding finders in ``codecs`` and ``ciphers``.

Each alternative is a necessary condition of one family (so a miss is a proof that no decoder
would produce a view):

- a run of 16+ base64/base32/hex alphabet characters (``base64``, ``base32``, ``hex``), or 8+
  ``\\xNN`` / ``0x`` / spaced hex pairs;
- ``<~`` (Adobe ascii85) or a ``begin NNN`` line (uuencode); a bare ascii85 run is decoded when
  the pre-scan fires for another reason (a cue word such as "decode": a gate on bare runs cost
  ~7 µs per turn and still fired on code);
- a Morse-looking run (4+ groups of dots and dashes);
- a Braille cell (U+2800-U+28FF), a Unicode tag character (U+E0000-U+E007F), a run of 2+
  combining marks (Zalgo; light Zalgo has pairs), an enclosed / regional-indicator / circled
  letter (U+1F100-U+1F1FF, U+24B6-U+24E9), a typographic Morse dot or dash, a supplementary
  variation selector (U+E0100-E01EF: a printable byte hidden after an emoji), an emoji
  run (ecoji, base100) or a run of 8+ non-ASCII characters without spaces (base2048: the
  decoder's own run; letters only missed the Bengali and Devanagari digits in its alphabet);
- a cue word naming a cipher (``rot13``, ``atbash``, ``caesar``, ``cipher``, ``decode``,
  ``morse``, ``nato``, ``braille``, ``leet``, ``base64`` ...);
- four or more NATO spelling-alphabet words;
- a ROT13 / Atbash signature word (``SIGNATURE_WORDS``: ``gur``, ``naq``, ``gsv`` ...);
- a leetspeak word (a letter, a look-alike digit, a letter: ``1gn0r3``, ``h4ck``; not ``@``:
  e-mail addresses would match).
"""

from __future__ import annotations

import re

__all__ = [
    "ATBASH_SIGNATURES",
    "CUE_WORDS",
    "MORSE_SYMBOLS",
    "NATO_WORDS",
    "ROT13_SIGNATURES",
    "SIGNATURE_WORDS",
    "looks_encoded",
]

NATO_WORDS = [
    "alfa",
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "juliett",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "whisky",
    "xray",
    "x-ray",
    "yankee",
    "zulu",
]

CUE_WORDS = (
    "rot13", "rot-13", "rot 13", "rot_13", "rot47", "atbash", "caesar", "cipher", "decod", "deobfusc",
    "unscrambl", "morse", "nato", "phonetic", "braille", "leet", "1337", "base64", "base 64",
    "base-64", "base32", "base16", "base85", "ascii85", "base2048", "base100", "uuencod", "hexadecimal",
    "encoded", "emoji", "reverse alphabet", "reversed alphabet", "mirror alphabet",
)  # fmt: skip
"""Lower-case substrings that name an encoding or ask for decoding (``"decod"``: decode,
decoding, decoder)."""

_SIGNED = "the and you to of how with this what are who your for is it all not will have from me my do"
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
ROT13_SIGNATURES = frozenset(
    _SIGNED.translate(str.maketrans(_ALPHABET, _ALPHABET[13:] + _ALPHABET[:13])).split()
)
ATBASH_SIGNATURES = frozenset(_SIGNED.translate(str.maketrans(_ALPHABET, _ALPHABET[::-1])).split()) - {
    "zoo",  # "all" in Atbash is an English word
}
SIGNATURE_WORDS = ROT13_SIGNATURES | ATBASH_SIGNATURES
"""The ROT13 and Atbash images of common English words ("the and you ... do": ``gur naq lbh``,
``gsv zmw blf``): a ciphertext that nobody names carries some of them, and they are rare in
English (``ciphers.decode_rot13`` / ``decode_atbash`` then decide by the chunk rule)."""

MORSE_SYMBOLS = frozenset("\u00b7\u2022\u2219\u22c5\u2027\u2212\u2013\u2014")
"""Typographic dots and dashes (middle dot, bullet, minus, en / em dash) of Morse outside ASCII."""

_CUE_RE = re.compile("|".join(re.escape(c) for c in CUE_WORDS))
_NATO = frozenset(NATO_WORDS)
_LONG_RUN = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_=-]{16}")
"""A run of 16+ alphabet characters, tried only where a run starts (the lookbehind): the plain
``[...]{16,}`` re-scanned every shorter word from each of its letters (~3x slower on prose)."""
_UUENCODE_BEGIN = re.compile(r"\bbegin [0-7]{3} ")
_LEET = re.compile(r"[A-Za-z][0134578][A-Za-z]")
_ESCAPED_HEX = re.compile(r"(?:(?:\\x|0[xX])[0-9A-Fa-f]{2}[ ,]{0,2}){4,}")
_SPACED_HEX = re.compile(r"[ :](?<=[0-9A-Fa-f]{2}[ :])(?:[0-9A-Fa-f]{2}[ :]){6}[0-9A-Fa-f]{2}")
"""8+ hex pairs joined by spaces or colons (``de ad be ef ...``), anchored on the first separator
(a space or colon) instead of on every hex letter of the prose: the same texts match as with
``(?:[0-9A-Fa-f]{2}[ :]){7,}[0-9A-Fa-f]{2}``, ~2x faster."""
_MORSE = re.compile(r"(?:[.\-]{1,7}[ /|\n]{1,3}){4,}")
_NON_ASCII = re.compile(
    "[\u2800-\u28ff\U000e0000-\U000e007f\U000e0100-\U000e01ef\U0001f100-\U0001f1ff\u24b6-\u24e9]"
    "|[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u20d0-\u20ff]{2,}"
    "|[\U0001f300-\U0001faff\u2600-\u27bf]{4,}"
    r"|[^\x00-\x7f\s]{8,}"
)
_DIGITS = frozenset("0134578")


_last: tuple[str, bool] = ("", False)


def looks_encoded(text: str) -> bool:
    """True when ``text`` may carry an encoded span. Ordered cheapest first: substring tests
    (C-speed ``in``), then small regular expressions guarded by a character test, so ordinary
    prose costs a few microseconds. O(len(text)).

    The answer for the last text asked about (the same object) is kept: a text that looks encoded
    is asked about twice in a row (``decoded_context`` asks, then ``views.decoded_views`` asks
    again before decoding it), so the second answer costs nothing. One entry, one reference."""
    global _last
    last = _last
    if last[0] is text:
        return last[1]
    found = _scan(text)
    _last = (text, found)
    return found


def _scan(text: str) -> bool:
    """``looks_encoded`` without the memo."""
    if not text.isascii() and (_NON_ASCII.search(text) or _typographic_morse(text)):
        return True
    low = text.lower()
    if _CUE_RE.search(low):  # on the lower-cased text: a case-insensitive alternation is ~15x slower
        return True
    if _LONG_RUN.search(text) or "<~" in text or ("begin " in text and _UUENCODE_BEGIN.search(text)):
        return True
    if not _DIGITS.isdisjoint(text) and _digit_families(text):
        return True
    if ("- " in text or "-/" in text or ".-" in text or "-\n" in text) and _MORSE.search(text):
        return True
    words = low.split()
    if not SIGNATURE_WORDS.isdisjoint(words):
        return True
    hits = 0
    for word in words:
        if word.strip(",./-|") in _NATO:
            hits += 1
            if hits >= 4:
                return True
    return False


_MORSE_CHAR = re.compile("[\u00b7\u2022\u2219\u22c5\u2027\u2212\u2013\u2014]")
_TYPO_MORSE = re.compile("(?:[.\\-\u00b7\u2022\u2219\u22c5\u2027\u2212\u2013\u2014]{1,7}[ /|\n]{1,3}){4,}")


def _typographic_morse(text: str) -> bool:
    """Morse in typographic dots and dashes (``·−``): a Morse run with them (a dash in prose is not
    enough). A character-class search first (``set.isdisjoint`` over the text was ~5 µs a turn)."""
    return _MORSE_CHAR.search(text) is not None and _TYPO_MORSE.search(text) is not None


def _digit_families(text: str) -> bool:
    """A leetspeak word, 4+ ``\\xNN`` / ``0xNN`` escapes or 8+ spaced hex pairs."""
    if _LEET.search(text):
        return True
    if ("\\x" in text or "0x" in text or "0X" in text) and _ESCAPED_HEX.search(text):
        return True
    return _SPACED_HEX.search(text) is not None
