"""Text-to-text obfuscations: substitution ciphers, symbol alphabets and Unicode tag characters,
and ``CIPHERS``, the registry of every text decoder (with ``lookalikes``: Zalgo, leetspeak, emoji
letters). Each decoder has the shape ``decode_x(text, limit) -> str | None`` (as in ``codecs``): the text with
the obfuscated spans replaced by plain text, or ``None`` when there is nothing to undo.

ROT13 and Atbash apply only when the text asks for them (a cue word: ``rot13``, ``atbash``,
``cipher``, ``decode`` ...) or carries a signature word (the cipher's image of a common English
word: ``gur``, ``naq``, ``gsv`` ...), and then only to the chunks that read more like English once
rotated (common-word counts): both are plain letters, so without a cue every text would be a
candidate.
Tables: ITU-R M.1677-1 (Morse), the ICAO/NATO spelling alphabet, Unicode's Braille Patterns block
(grade-1 English letters), Unicode tag characters U+E0020-U+E007E (they shadow ASCII 0x20-0x7E).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from policies.decoding.codecs import CLOSE, OPEN
from policies.decoding.lookalikes import decode_emoji_letters, decode_leet, decode_zalgo
from policies.decoding.prescan import ATBASH_SIGNATURES, MORSE_SYMBOLS, NATO_WORDS, ROT13_SIGNATURES

__all__ = ["CIPHERS", "tag_text"]

_COMMON = frozenset(
    [
        "the",
        "and",
        "you",
        "to",
        "of",
        "a",
        "is",
        "in",
        "that",
        "it",
        "for",
        "your",
        "all",
        "are",
        "with",
        "this",
        "be",
        "on",
        "as",
        "or",
        "not",
        "i",
        "me",
        "my",
        "what",
        "do",
        "can",
        "will",
        "from",
        "have",
        "an",
        "by",
        "if",
        "any",
        "now",
        "no",
        "was",
        "how",
        "tell",
        "print",
        "say",
        "give",
        "show",
        "make",
        "write",
        "ignore",
        "previous",
        "instructions",
        "at",
        "we",
        "they",
        "he",
        "she",
        "his",
        "her",
        "them",
        "our",
        "us",
        "but",
        "so",
        "up",
        "out",
        "about",
        "into",
        "than",
        "then",
        "there",
        "their",
        "these",
        "those",
        "who",
        "when",
        "where",
        "why",
        "which",
        "would",
        "should",
        "could",
        "been",
        "has",
        "had",
        "did",
        "does",
        "just",
        "like",
        "only",
        "also",
        "more",
        "most",
        "some",
        "such",
        "very",
        "one",
        "two",
        "new",
        "way",
        "use",
        "used",
        "get",
        "got",
        "go",
        "going",
        "know",
        "want",
        "need",
        "please",
        "help",
        "explain",
        "describe",
        "list",
        "step",
        "steps",
        "how",
        "instead",
        "other",
        "over",
        "after",
        "before",
        "never",
        "always",
        "every",
        "people",
        "him",
        "its",
        "were",
        "am",
        "being",
        "here",
    ]
)
"""Common English words (the most frequent function words and the verbs of instructions): the
measure of "reads as English" that decides which chunks a cipher applies to."""
_WORD = re.compile(r"[A-Za-z]+")


def _common(text: str) -> int:
    """Common English words of 2+ letters among the whitespace-separated tokens of ``text``."""
    words = (t.strip(".,;:!?\"'()[]").lower() for t in text.split())
    return sum(1 for w in words if len(w) >= 2 and w.isalpha() and w in _COMMON)


_CHUNKS = re.compile(r"([\n:`«»“”\"]+|(?<=[.?!])[ \t]+)")
_QUOTES = re.compile(r"((?<![A-Za-z])'|'(?![A-Za-z]))")
"""Lines, sentences, colon- and double-quote-delimited chunks first; within a chunk that does not
read as English either way, single quotes that are not apostrophes (``'V unir'`` but not ``it's``)."""


def _gain(chunk: str, table: dict[int, int]) -> tuple[int, str]:
    rotated = chunk.translate(table)
    return _common(rotated) - _common(chunk), rotated


_ADJACENT_SPANS = re.compile(f"{CLOSE}([ \t]+){OPEN}")


def _rotate_spans(text: str, table: dict[int, int], named: bool) -> str | None:
    """Apply ``table`` to each chunk (``_CHUNKS``) that reads more like English after it (more
    common words, at least two: "NB" is "MY" in Atbash); a chunk that does not is tried in its
    single-quote parts. When the cipher is ``named`` in the text and no chunk qualifies, the chunk
    that gains most (the longest of equals) is rotated. ``None`` when nothing is."""
    chunks = _CHUNKS.split(text)
    changed = False
    best: tuple[int, int, int] | None = None  # (gain, length, index) for the named fallback
    for i in range(0, len(chunks), 2):
        chunk = chunks[i]
        gain, rotated = _gain(chunk, table)
        if gain > 0 and _common(rotated) >= 2:
            chunks[i] = OPEN + rotated + CLOSE
            changed = True
            continue
        parts = _QUOTES.split(chunk)
        if len(parts) > 1:
            hit = False
            for j in range(0, len(parts), 2):
                g, rot = _gain(parts[j], table)
                if g > 0:
                    parts[j], hit = OPEN + rot + CLOSE, True
            if hit:
                chunks[i], changed = "".join(parts), True
                continue
        if chunk.strip() and (best is None or (gain, len(chunk)) > best[:2]):
            best = (gain, len(chunk), i)
    if changed:
        # rotated sentences next to each other are one span ("...rules. Print ..."), not two
        return _ADJACENT_SPANS.sub(r"\1", "".join(chunks))
    if named and best is not None:
        i = best[2]
        chunks[i] = OPEN + chunks[i].translate(table) + CLOSE
        return "".join(chunks)
    return None


_LOWER = "abcdefghijklmnopqrstuvwxyz"
_UPPER = _LOWER.upper()
_ROT13 = str.maketrans(_LOWER + _UPPER, _LOWER[13:] + _LOWER[:13] + _UPPER[13:] + _UPPER[:13])
_ATBASH = str.maketrans(_LOWER + _UPPER, _LOWER[::-1] + _UPPER[::-1])
_ROT_CUE = re.compile(r"rot[\s_-]?13|caesar|cipher|decod|unscrambl")
_ROT_NAMED = re.compile(r"rot[\s_-]?13|caesar")
_ATBASH_CUE = re.compile(r"atbash|reverse[d]? alphabet|mirror alphabet|cipher|decod|decipher")
"""Cue words, searched in ``folded(text)`` (case-sensitive on the folded text: the same matches as
``(?i)`` on the text, ~3x faster). Besides the names, a cipher's *signature words*
(``prescan.ROT13_SIGNATURES`` / ``ATBASH_SIGNATURES``: the images of common English words), so a
ciphertext that nobody names is still tried; the chunk rule then decides (a chunk must read more
like English once rotated)."""


def _cued(low: str, cue: re.Pattern[str], signatures: frozenset[str]) -> bool:
    """A cue word in the folded text, or a signature word among its whitespace-separated words
    (punctuation stripped at the ends)."""
    if cue.search(low) is not None:
        return True
    return not signatures.isdisjoint(w.strip(".,;:!?\"'()[]") for w in low.split())


_ASCII_FOLDS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
"""The non-ASCII letters ``re.IGNORECASE`` matches to ASCII ones (dotted and dotless i, long s,
Kelvin sign; Python ``re`` docs), mapped before lower-casing."""
_last_folded: tuple[str, str] = ("", "")


def folded(text: str) -> str:
    """``text`` lower-cased as ``re.IGNORECASE`` compares ASCII letters (``_ASCII_FOLDS`` first),
    for case-sensitive searches of lower-case ASCII patterns. The last result is kept: the
    decoders of one text ask for it in turn."""
    global _last_folded
    last = _last_folded
    if last[0] is text:
        return last[1]
    low = text.lower() if text.isascii() else text.translate(_ASCII_FOLDS).lower()
    _last_folded = (text, low)
    return low


def decode_rot13(text: str, limit: int) -> str | None:
    """ROT13 (Caesar shift 13) of the chunks that read as English after it, only with a cue word
    or a signature word (see module doc)."""
    low = folded(text)
    if not _cued(low, _ROT_CUE, ROT13_SIGNATURES):
        return None
    return _rotate_spans(text[:limit], _ROT13, _ROT_NAMED.search(low) is not None)


def decode_atbash(text: str, limit: int) -> str | None:
    """Atbash (a<->z) of the chunks that read as English after it; only with a cue word or a
    signature word."""
    if not _cued(folded(text), _ATBASH_CUE, ATBASH_SIGNATURES):
        return None
    return _rotate_spans(text[:limit], _ATBASH, "atbash" in text.lower())


# International Morse (ITU-R M.1677-1), code -> character; the red-team encoders invert it.
MORSE_TABLE = dict(
    zip(
        [
            ".-",
            "-...",
            "-.-.",
            "-..",
            ".",
            "..-.",
            "--.",
            "....",
            "..",
            ".---",
            "-.-",
            ".-..",
            "--",
            "-.",
            "---",
            ".--.",
            "--.-",
            ".-.",
            "...",
            "-",
            "..-",
            "...-",
            ".--",
            "-..-",
            "-.--",
            "--..",
            "-----",
            ".----",
            "..---",
            "...--",
            "....-",
            ".....",
            "-....",
            "--...",
            "---..",
            "----.",
            ".-.-.-",
            "--..--",
            "..--..",
            "-.-.--",
            ".----.",
            "-..-.",
            "---...",
        ],
        "abcdefghijklmnopqrstuvwxyz0123456789.,?!'/:",
        strict=True,
    )
)
_MORSE = re.compile(r"(?:[.\-]{1,7}(?:[ ]{1,3}|\s*[/|]\s*|[ \t]*\r?\n[ \t]*)){3,}[.\-]{1,7}")
_MORSE_WORD = re.compile(r"\s*[/|]\s*|[ ]{2,}|\s*\n\s*")
_MORSE_FOLD = str.maketrans(
    {"\u00b7": ".", "\u2022": ".", "\u2219": ".", "\u22c5": ".", "\u2027": ".", "\u2212": "-", "\u2013": "-"}
    | {"\u2014": "-", "_": "-"}
)
"""Typographic dots (middle dot, bullet, ...) and dashes (minus, en / em dash, underscore) of
Morse written outside ASCII, folded to ``.`` and ``-``."""


def decode_morse(text: str, limit: int) -> str | None:
    """International Morse (ITU-R M.1677-1): letters separated by one space, words by ``/``, ``|``,
    two or more spaces or a line break; at least 4 symbols, 80 % of them valid letters.
    Typographic dots and dashes (``·−``, ``•—``) are read as ``.`` and ``-``."""
    if not text.isascii() and not MORSE_SYMBOLS.isdisjoint(text):
        text = text.translate(_MORSE_FOLD)

    def one(m: re.Match[str]) -> str:
        words = []
        total = bad = 0
        for word in _MORSE_WORD.split(m.group(0)[:limit].strip()):
            letters = []
            for sym in word.split():
                total += 1
                ch = MORSE_TABLE.get(sym)
                if ch is None:
                    bad += 1
                else:
                    letters.append(ch)
            words.append("".join(letters))
        if total < 4 or bad > 0.2 * total:
            return m.group(0)
        return f" {OPEN}" + " ".join(w for w in words if w) + f"{CLOSE} "

    out = _MORSE.sub(one, text)
    return out if out != text else None


_NATO_RE = re.compile(
    rf"(?i)(?:\b(?:{'|'.join(re.escape(w) for w in NATO_WORDS)}|space|stop)\b[\s,./|()-]*){{4,}}"
)
_NATO_TOKEN = re.compile(r"(?i)x-ray|[a-z]+|[/|\n]")
_NATO_LETTER = {w: ("x" if w.startswith("x") else w[0]) for w in NATO_WORDS}


def decode_nato(text: str, limit: int) -> str | None:
    """NATO / ICAO spelling: a run of 4+ alphabet words becomes its letters (code words separated
    by spaces, hyphens or commas); ``/``, ``|``, a line break, ``space`` / ``(space)`` or ``stop``
    separate words."""

    def one(m: re.Match[str]) -> str:
        words: list[str] = []
        cur: list[str] = []
        for tok in _NATO_TOKEN.findall(m.group(0)[:limit]):
            low = tok.lower()
            if low in ("/", "|", "\n", "space", "stop"):
                words.append("".join(cur))
                cur = []
            elif low in _NATO_LETTER:
                cur.append(_NATO_LETTER[low])
        words.append("".join(cur))
        return f" {OPEN}" + " ".join(w for w in words if w) + f"{CLOSE} "

    if _nato_tokens(folded(text)) < 4:
        return None
    out = _NATO_RE.sub(one, text)
    return out if out != text else None


_NATO_TOKENS = frozenset(NATO_WORDS) | {"x", "ray", "space", "stop"}
_LETTER_RUN = re.compile(r"[a-z]+")


def _nato_tokens(low: str) -> int:
    """Letter runs of the lower-cased ASCII ``low`` that can be part of a spelled word (``x-ray``
    counts as ``x`` and ``ray``): a run of ``_NATO_RE`` needs 4, so fewer means no match (one
    ``findall`` instead of the case-insensitive alternation tried at every position)."""
    return sum(1 for w in _LETTER_RUN.findall(low) if w in _NATO_TOKENS)


_BRAILLE_LETTERS = dict(zip("⠁⠃⠉⠙⠑⠋⠛⠓⠊⠚⠅⠇⠍⠝⠕⠏⠟⠗⠎⠞⠥⠧⠺⠭⠽⠵", _LOWER, strict=True))
_BRAILLE_PUNCT = {"⠀": " ", "⠲": ".", "⠂": ",", "⠦": "?", "⠖": "!", "⠄": "'", "⠤": "-", "⠒": ":"}
_BRAILLE_DIGITS = dict(zip("⠁⠃⠉⠙⠑⠋⠛⠓⠊⠚", "1234567890", strict=True))
_BRAILLE = re.compile("[\u2800-\u28ff][\u2800-\u28ff\\s]*")


def decode_braille(text: str, limit: int) -> str | None:
    """Grade-1 English Braille (Unicode Braille Patterns): letters, capital sign ⠠, number sign ⠼
    (digits until a space), common punctuation."""

    def one(m: re.Match[str]) -> str:
        out: list[str] = []
        capital = number = False
        for c in m.group(0)[:limit]:
            if c == "⠠":
                capital = True
            elif c == "⠼":
                number = True
            elif number and c in _BRAILLE_DIGITS:
                out.append(_BRAILLE_DIGITS[c])
            elif c in _BRAILLE_LETTERS:
                letter = _BRAILLE_LETTERS[c]
                out.append(letter.upper() if capital else letter)
                capital = False
            else:
                number = False
                out.append(_BRAILLE_PUNCT.get(c, " " if c.isspace() else ""))
        return OPEN + "".join(out) + CLOSE

    out = _BRAILLE.sub(one, text)
    return out if out != text else None


_TAGS = re.compile("[\U000e0000-\U000e007f]+")


_EMOJI_TAG_SEQUENCE = re.compile("\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{1,7}\U000e007f")
"""An emoji tag sequence (Unicode TS #51, ED-14a): the black flag, a subdivision code in tag
letters and digits, the cancel tag, e.g. the flag of Scotland (``gbsct``). Not hidden text."""


def tag_text(text: str) -> str:
    """The ASCII text hidden in Unicode tag characters (U+E0020-U+E007E -> 0x20-0x7E; the language
    tag U+E0001 and cancel tag U+E007F dropped), runs joined by a space; ``""`` when none. Emoji
    tag sequences (flags of subdivisions) are not hidden text and are skipped."""
    if "\U0001f3f4" in text:
        text = _EMOJI_TAG_SEQUENCE.sub("\U0001f3f4", text)
    runs = _TAGS.findall(text)
    return " ".join(
        "".join(chr(ord(c) - 0xE0000) for c in run if 0xE0020 <= ord(c) <= 0xE007E) for run in runs
    )


def decode_tags(text: str, limit: int) -> str | None:
    """The visible text followed by the hidden tag-character text on its own line."""
    hidden = tag_text(text[: limit * 4]).strip()
    if not hidden:
        return None
    return f"{_TAGS.sub('', text)}\n{OPEN}{hidden[:limit]}{CLOSE}"


CIPHERS: tuple[tuple[str, Callable[[str, int], str | None]], ...] = (
    ("unicode_tags", decode_tags),
    ("zalgo", decode_zalgo),
    ("braille", decode_braille),
    ("morse", decode_morse),
    ("nato", decode_nato),
    ("emoji_letters", decode_emoji_letters),
    ("rot13", decode_rot13),
    ("atbash", decode_atbash),
    ("leetspeak", decode_leet),
)
"""``(encoding name, decoder)`` in the order they are tried."""
