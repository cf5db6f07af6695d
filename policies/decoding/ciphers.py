"""Text-to-text obfuscations: substitution ciphers, symbol alphabets and Unicode tricks. Each
decoder has the shape ``decode_x(text, limit) -> str | None`` (as in ``codecs``): the text with
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
import unicodedata
from collections.abc import Callable

from policies.decoding.codecs import CLOSE, OPEN
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
