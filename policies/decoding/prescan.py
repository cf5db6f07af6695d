"""The fast pre-scan: one compiled regular expression that says whether a text *may* carry an
encoded span. Ordinary prose matches nothing and costs one ``re.search`` (a few microseconds for
a 2,000-character prompt); only a hit pays for the per-encoding finders in ``codecs`` and
``ciphers``.

Each alternative is a necessary condition of one family (so a miss is a proof that no decoder
would produce a view):

- a run of 16+ base64/base32/hex alphabet characters (``base64``, ``base32``, ``hex``), or 8+
  ``\\xNN`` / ``0x`` / spaced hex pairs;
- ``<~`` (Adobe ascii85) or a ``begin NNN`` line (uuencode);
- a Morse-looking run (4+ groups of dots and dashes);
- a Braille cell (U+2800-U+28FF), a Unicode tag character (U+E0000-U+E007F), a run of 3+
  combining marks (Zalgo), an enclosed / regional-indicator letter (U+1F100-U+1F1FF), an emoji
  run (ecoji, base100) or a run of 8+ non-ASCII letters without spaces (base2048);
- a cue word naming a cipher (``rot13``, ``atbash``, ``caesar``, ``cipher``, ``decode``,
  ``morse``, ``nato``, ``braille``, ``leet``, ``base64`` ...);
- a NATO spelling run (4+ alphabet words in a row);
- a leetspeak word (a letter, a look-alike digit, a letter: ``1gn0r3``, ``h4ck``; not ``@``:
  e-mail addresses would match).
"""

from __future__ import annotations

import re

__all__ = ["PRESCAN", "looks_encoded"]

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

_CUES = (
    r"rot[\s_-]?13|rot[\s_-]?47|atbash|caesar|cipher|decod|decipher|deobfuscat|unscrambl|"
    r"morse|nato|phonetic|braille|leet|1337|base[\s_-]?(?:16|32|64|85|2048|100)|ascii85|uuencod|"
    r"hexadecimal|encoded|emoji"
)

PRESCAN = re.compile(
    "|".join(
        [
            r"[A-Za-z0-9+/_=-]{16,}",
            r"(?:(?:\\x|0x)[0-9A-Fa-f]{2}){4,}",
            r"(?:[0-9A-Fa-f]{2}[ :]){7,}[0-9A-Fa-f]{2}",
            r"<~",
            r"\bbegin [0-7]{3} ",
            r"(?:[.\-]{1,7}[ /]{1,3}){4,}",
            "[\u2800-\u28ff\U000e0000-\U000e007f\U0001f100-\U0001f1ff]",
            "[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u20d0-\u20ff]{3,}",
            "[\U0001f300-\U0001faff\u2600-\u27bf]{4,}",
            r"[^\x00-\x7f\s\d\W]{8,}",
            rf"(?i:{_CUES})",
            rf"(?i:\b(?:{'|'.join(NATO_WORDS)})\b[\s,./-]+){{3,}}",
            r"[A-Za-z][0134578][A-Za-z]",
        ]
    ),
    re.MULTILINE,
)
"""The union of every family's trigger (see the module docstring)."""


def looks_encoded(text: str) -> bool:
    """True when ``text`` may carry an encoded span (one regex search; O(len(text)))."""
    return PRESCAN.search(text) is not None
