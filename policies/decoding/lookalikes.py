"""Look-alike obfuscations: combining-mark floods (Zalgo), leetspeak and letters written as emoji.
Decoders have the shape of ``ciphers`` / ``codecs``: ``decode_x(text, limit) -> str | None``, the
text with the obfuscated spans replaced (and marked with ``OPEN`` / ``CLOSE``), or ``None``.
Unicode data: combining-mark blocks (U+0300-036F, U+1AB0-1AFF, U+1DC0-1DFF, U+20D0-20FF,
U+FE20-FE2F), enclosed alphanumerics (U+24B6-24E9, U+1F100-1F1FF) named by ``unicodedata``.
"""

from __future__ import annotations

import re
import unicodedata

from policies.decoding.codecs import CLOSE, OPEN

__all__ = ["decode_emoji_letters", "decode_leet", "decode_zalgo"]

_MARKS = re.compile("[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_FLOOD = re.compile("[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]{3,}")


_MARKED_RUN = re.compile(
    "\\S*[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]\\S*"
    "(?:[ \t]+\\S*[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]\\S*)*"
)
"""A run of words, each carrying a combining mark (on one line): the span Zalgo covered."""


def decode_zalgo(text: str, limit: int) -> str | None:
    """Combining-mark floods ("Zalgo"): when a run of 3+ combining marks occurs, or 8+ marks make
    up a third of the letters (light Zalgo: one or two marks on every letter), every combining
    mark is removed (NFD first, so accented letters keep their base letter); each run of marked
    words is the payload."""
    source = unicodedata.normalize("NFD", text[: limit * 8])
    if _FLOOD.search(source) is None:
        marks = len(_MARKS.findall(source))
        if marks < 8 or marks < 0.33 * sum(map(str.isalpha, source)):
            return None
    out = _MARKED_RUN.sub(lambda m: OPEN + _MARKS.sub("", m.group(0)) + CLOSE, source)
    return out[:limit]


_LEET_MAP = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "8": "b",
        "@": "a",
        "$": "s",
        "|": "l",
        "!": "i",
    }
)
_LEET_WORD = re.compile(
    r"(?<![\w@$|!.+/=-])(?=[A-Za-z013457@$|!8]{0,14}[013457@$|!8])[A-Za-z013457@$|!8]{3,15}(?![\w@$|!+/=-])"
)
"""A word of 3-15 letters and look-alikes (the lookahead: with at least one look-alike, so plain
words never reach the Python callback, which would leave them unchanged)."""


_LEET_HINT = re.compile(r"[A-Za-z][013457@$|!8]|[013457@$|!8][A-Za-z]")
"""A letter next to a look-alike: every leet word has one (it mixes both inside one run of
``_LEET_WORD``'s class), so a text without it has nothing to decode (one C-speed search)."""


def _punctuation_dense(line: str) -> bool:
    """Fewer than 85 % of ``line``'s characters are letters, digits or spaces (no character is
    both alphanumeric and whitespace, so the two counts add up)."""
    plain = sum(map(str.isalnum, line)) + sum(map(str.isspace, line))
    return plain < 0.85 * len(line)


_LEET_TOKEN = re.compile(r"(?<![\w])[A-Za-z]*[013457][A-Za-z013457]*(?![\w])")
"""In a line already read as leetspeak: a letter-and-digit token with a look-alike digit (``70``,
``m3``, ``'5``, both halves of ``3x-p4r7n3r``), however short."""
_LEET_DIGITS = frozenset("013457")


def _leet_token(m: re.Match[str]) -> str:
    tok = m.group(0)
    if tok.isdigit():
        around = m.string[max(0, m.start() - 2) : m.start()] + m.string[m.end() : m.end() + 2]
        if len(tok) > 3 or any(c in ":.,/+" for c in around):
            return tok  # a number (a year, an amount, a time 15:35, a date), not a word
    return tok.translate(_LEET_MAP)


def _in_address(m: re.Match[str]) -> bool:
    """The leet-looking word is the local part and domain of an e-mail address (``hello@mercury``
    followed by ``.com``): ``@`` between letters, a dot after."""
    word, after = m.group(0), m.string[m.end() : m.end() + 1]
    at = word.find("@")
    return 0 < at < len(word) - 1 and word[at - 1].isalnum() and word[at + 1].isalpha() and after == "."


def _first_leet(line: str) -> int:
    """Where the first leet word of ``line`` starts (a word with a letter and a look-alike; same
    length before and after decoding, so the offset holds in the decoded line too)."""
    for m in _LEET_WORD.finditer(line):
        word = m.group(0)
        leet = any(c.isalpha() for c in word) and not word.isalpha() and word[:2] not in ("0x", "0X")
        if leet and not _in_address(m):
            return m.start()
    return 0


def decode_leet(text: str, limit: int) -> str | None:
    """Leetspeak: words mixing letters with look-alike digits/symbols (0->o 1->i 3->e 4->a 5->s
    7->t 8->b @->a $->s |->l !->i), in any mix of cases; ``11`` after a letter reads ``ll``
    ("a11" -> "all"). Needs two such words; each line with one is marked as payload, and in it
    the short tokens too (``70`` -> "to", ``m3`` -> "me", ``4`` -> "a"; numbers of 4+ digits
    stay). Lines that are mostly punctuation (encoded data) are left alone. Cost: one regex search
    on a text without a letter next to a look-alike (``_LEET_HINT``); the punctuation count only
    on lines with a leet word."""
    source = text[:limit]
    if _LEET_HINT.search(source) is None:
        return None
    changed = 0

    def one(m: re.Match[str]) -> str:
        nonlocal changed
        word = m.group(0)
        letters = sum(c.isalpha() for c in word)
        if letters < 1 or letters == len(word) or word[:2] in ("0x", "0X") or _in_address(m):
            return word  # no look-alike, a hex number (0x6C), or an e-mail address
        changed += 1
        word = re.sub(r"(?<=[A-Za-z])11|11(?=[A-Za-z])", "ll", word)
        return word.translate(_LEET_MAP)

    lines = []
    for line in source.split("\n"):
        before = changed
        new = _LEET_WORD.sub(one, line)
        if changed == before:
            lines.append(new)
        elif _punctuation_dense(line):
            changed = before  # encoded data (uuencode, ascii85), not leetspeak
            lines.append(line)
        else:
            if not _LEET_DIGITS.isdisjoint(new):
                new = _LEET_TOKEN.sub(_leet_token, new)
            at = _first_leet(line)  # the framing before the first leet word is not payload
            lines.append(new[:at] + OPEN + new[at:] + CLOSE)
    return "\n".join(lines) if changed >= 2 else None


_ENCLOSED_CHARS = "[\U0001f100-\U0001f1ff\u24b6-\u24e9]"
_ENCLOSED = re.compile(_ENCLOSED_CHARS)
_ENCLOSED_RUN = re.compile(f"{_ENCLOSED_CHARS}+(?:[ \t]+{_ENCLOSED_CHARS}+)*")


def _enclosed_letter(m: re.Match[str]) -> str:
    name = unicodedata.name(m.group(0), "")
    tail = name.rsplit(" ", 1)[-1]
    return tail.lower() if len(tail) == 1 and tail.isalpha() else m.group(0)


def decode_emoji_letters(text: str, limit: int) -> str | None:
    """Letters written as emoji: regional indicators (🇦 -> a), squared / circled / negative
    letters (🅰 -> a), named in their Unicode character name."""
    source = text[:limit]
    out = _ENCLOSED_RUN.sub(lambda m: OPEN + _ENCLOSED.sub(_enclosed_letter, m.group(0)) + CLOSE, source)
    return out if out.replace(OPEN, "").replace(CLOSE, "") != source else None
