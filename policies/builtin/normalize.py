"""Text normalisation for content classifiers: one canonical form plus decoded *views*.

Pure and fast (runs inline on every request). ``normalize(text)`` gives the canonical form:

1. NFKC (fullwidth and mathematical letters become ASCII);
2. zero-width, bidi-control and other invisible format characters removed (U+200B..U+200F,
   U+202A..U+202E, U+2060..U+2064, U+2066..U+2069, U+FEFF, U+00AD, U+180E); Unicode *tag*
   characters (U+E0020..U+E007E, "ASCII smuggling") are mapped back to the ASCII they shadow;
3. confusable / homoglyph folding: in every word that mixes scripts (has an ASCII letter) or is
   made only of look-alikes, each non-ASCII character that Unicode's confusables table (via the
   ``confusable-homoglyphs`` package, read at import time) lists as a look-alike of an ASCII letter
   or digit becomes that ASCII character (Cyrillic ``о`` -> ``o``), case kept where the
   character's name says CAPITAL/SMALL; invisible characters inside words are dropped too. Words
   of a real non-Latin script are kept (TR39's "mixed-script confusable" idea);
4. redaction placeholders of the gateway's vault (``<EMAIL_ADDRESS_1>``) become their entity
   words (``email address``): the classifier never saw placeholders, and their ``<``/``_``/``>``
   look like an adversarial suffix to it;
5. whitespace collapsed: runs of spaces/tabs to one space, line breaks kept (one ``\n`` between
   non-empty lines), leading and trailing whitespace stripped.

``views(text)`` returns the canonical form as view ``plain`` and, only when the text calls for it,
more views to be scored as well (a classifier takes the max over views):

- ``spaced``: when a run of at least four single letters separated by one space/dot/dash/
  underscore appears ("I g n o r e", "I.g.n.o.r.e"), every such run of two or more letters is
  collapsed into a word (two spaces separate words: "I g n o r e  a l l" -> "Ignore all");
- ``base64`` / ``hex``: payloads that decode to printable UTF-8 text are replaced by their decoding;
- ``rot13``: the ROT13 of the text when that reads more like English than the text itself
  (measured by common-word counts) or when the text names ROT13.

Cost: an ASCII prompt of 500 characters takes roughly 10-30 microseconds (no decodable payloads).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata

from confusable_homoglyphs import confusables as _confusables

from policies.decoding.codecs import decimal_only_hex
from policies.native import module as native_module

__all__ = [
    "INVISIBLE",
    "TAG_CHARACTERS",
    "decoded_views",
    "fold_map",
    "invisible_counts",
    "json_strings",
    "normalize",
    "strip_invisible",
    "views",
]

INVISIBLE: frozenset[int] = frozenset(
    [
        *(0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFEFF, 0xFFA0),
        *range(0x200B, 0x2010),
        *range(0x202A, 0x202F),
        *range(0x2060, 0x2065),
        *range(0x2066, 0x206A),
        *range(0xFE00, 0xFE10),  # variation selectors
    ]
)
"""Code points deleted before anything else: zero-width, bidi controls, invisible fillers."""

TAG_CHARACTERS = re.compile("[\U000e0000-\U000e007f]+")
"""Unicode tag characters (U+E0000-U+E007F, block "Tags"): invisible in most renderers, yet many
models read U+E0020-U+E007E as the ASCII they shadow ("ASCII smuggling")."""

_INVISIBLE_RUN = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(INVISIBLE)) + "]+")


def invisible_counts(text: str) -> tuple[int, int]:
    """``(tag characters, other invisible characters)`` in ``text``. One regex pass each; ASCII
    text returns ``(0, 0)`` at once."""
    if text.isascii():
        return 0, 0
    tags = sum(len(m) for m in TAG_CHARACTERS.findall(text))
    other = sum(len(m) for m in _INVISIBLE_RUN.findall(text))
    return tags, other


def strip_invisible(text: str, *, tags: bool = True, other: bool = False) -> str:
    """``text`` without its tag characters (``tags``) and/or its other invisible characters
    (``other``: zero-width, bidi controls, fillers; off by default, since zero-width joiners are
    legitimate in emoji sequences and some scripts)."""
    if text.isascii():
        return text
    if tags:
        text = TAG_CHARACTERS.sub("", text)
    if other:
        text = _INVISIBLE_RUN.sub("", text)
    return text


def _build_fold_map() -> dict[int, str]:
    """``str.translate`` table: invisible -> deleted, tag characters -> ASCII, non-ASCII homoglyphs
    of ASCII letters/digits -> that ASCII character.

    Source: Unicode's confusables.txt as packaged by ``confusable-homoglyphs`` (its
    ``confusables_data``: character -> list of look-alikes). Built once at import (~10 ms).
    """
    table: dict[int, str] = {cp: "" for cp in INVISIBLE}
    for cp in range(0xE0020, 0xE007F):
        table[cp] = chr(cp - 0xE0000)
    table[0xE0001] = ""
    table[0xE007F] = ""
    data: dict[str, list[dict[str, str]]] = _confusables.confusables_data
    for char, glyphs in data.items():
        if len(char) != 1 or char.isascii():
            continue
        cands = [g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalnum()]
        if not cands:
            continue
        name = unicodedata.name(char, "")
        if "CAPITAL" in name:
            # capital look-alikes of the skeleton "l" are I-shaped (Cyrillic I, Greek IOTA)
            preferred = [c for c in cands if c.isupper()] or ["I" if c == "l" else c for c in cands]
        elif "SMALL" in name:
            preferred = [c for c in cands if c.islower()] or cands
        else:
            preferred = cands
        named = name.rsplit(" ", 1)[-1]
        if len(named) == 1 and named.isalpha() and named.lower() in {c.lower() for c in cands}:
            # "CYRILLIC CAPITAL LETTER BYELORUSSIAN-UKRAINIAN I" -> "I", not the skeleton "l"
            table[ord(char)] = named.lower() if "SMALL" in name else named
            continue
        letters = [c for c in preferred if c.isalpha()]
        table[ord(char)] = (letters or preferred)[0]
    return table


_FOLD: dict[int, str] = _build_fold_map()
_FOLDABLE: frozenset[str] = frozenset(map(chr, _FOLD))
"""The characters ``_FOLD`` changes: a text with none of them is left as it is by the folding
(``_fold_word`` returns every word unchanged), so the per-word pass is skipped (an ``isdisjoint``
scan, ~10x cheaper than the pass on a text with curly quotes or dashes)."""


def fold_map() -> dict[int, str]:
    """A copy of the translate table used by ``normalize`` (for inspection and tests)."""
    return dict(_FOLD)


_NATIVE = native_module()
"""``policies._native`` (``has_run``), or ``None``: the byte operations (``policies.native``)."""
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")
_SEPARATORS = frozenset("._-*/|")


_NON_ASCII_WORD = re.compile(r"[^\W\d_]*[^\x00-\x7f][^\W\d_]*|[^\x00-\x7f]")


def _fold_word(m: re.Match[str]) -> str:
    """Fold one word that has a non-ASCII character: when it mixes scripts (has an ASCII letter)
    or consists only of look-alikes of ASCII letters. A word of a real non-Latin script (Russian
    "привет") has letters without ASCII look-alikes and is kept as it is."""
    word = m.group(0)
    folded = word.translate(_FOLD)
    if folded.isascii() or any("a" <= c.lower() <= "z" for c in word):
        return folded
    return word


def _collapse(text: str) -> str:
    """Runs of spaces/tabs -> one space; line breaks kept between non-empty lines; stripped."""
    if "\n" not in text and "\r" not in text:
        return " ".join(text.split())
    lines = (" ".join(line.split()) for line in text.replace("\r", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9]*(?:_[A-Z][A-Z0-9]*)*)_\d+>")


def _entity_words(m: re.Match[str]) -> str:
    return m.group(1).replace("_", " ").lower()


def _fold(text: str) -> str:
    """NFKC + invisible removal + homoglyph folding + redaction placeholders as words;
    whitespace untouched."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        if not text.isascii() and not _FOLDABLE.isdisjoint(text):
            text = _NON_ASCII_WORD.sub(_fold_word, text)
    if "<" in text:
        text = _PLACEHOLDER.sub(_entity_words, text)
    return text


def normalize(text: str) -> str:
    """The canonical form of ``text`` (see the module docstring). Never raises for a ``str``."""
    return _collapse(_fold(text))


def json_strings(text: str) -> str | None:
    """The string values of ``text`` when it is a JSON object or array (one per line), else
    ``None``. Tool results are often JSON: the injection, if any, is in the values, and the JSON
    punctuation would otherwise read as an adversarial suffix to the classifier. Identifier keys
    (``user_id``) are left out; a key that reads as text (it holds whitespace) is kept before
    its value, so an instruction cannot hide in a key."""
    body = text.strip()
    if len(body) < 2 or body[0] not in "{[" or body[-1] not in "}]":
        return None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return None
    out: list[str] = []
    stack: list[object] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if node.strip():
                out.append(node)
        elif isinstance(node, dict):
            for key, value in reversed(list(node.items())):
                stack.append(value)
                if any(c.isspace() for c in key):
                    stack.append(key)
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return "\n".join(out)


# --- views ------------------------------------------------------------------------------------

_SPACED = re.compile(r"(?<![A-Za-z])(?:[A-Za-z][ ._\-*/|]){3,}[A-Za-z](?![A-Za-z])")
_SPACED_SHORT = re.compile(r"(?<![A-Za-z])(?:[A-Za-z][ ._\-*/|]){1,}[A-Za-z](?![A-Za-z])")
_B64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<![0-9A-Fa-fx])(?:(?:\\x|0x)?[0-9A-Fa-f]{2}[ :,]?){8,}")
_HEXCHARS = re.compile(r"\\x|0x|[ :,]")
_SPACE_SEP = re.compile(r"[ ._\-*/|]")
_WORD = re.compile(r"[a-z]+")
_ROT13 = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)
_ROT13_NAMED = re.compile(r"rot[\s\-_]?13|caesar", re.IGNORECASE)
_COMMON_WORDS = (
    "the and you to of a is in that it for your all are with this be on as or not i me my what "
    "do can will from have an by if any now no was how tell print say give show"
)
_COMMON = frozenset(_COMMON_WORDS.split(" "))
_COMMON_ROT13 = frozenset(w.translate(_ROT13) for w in _COMMON)


def _printable_text(raw: bytes) -> str | None:
    """``raw`` as UTF-8 text when it is mostly printable and has letters, else None."""
    try:
        out = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(out) < 4:
        return None
    printable = sum(1 for c in out if c.isprintable() or c in "\n\t\r")
    letters = sum(1 for c in out if c.isalpha())
    if printable < 0.95 * len(out) or letters < 0.5 * len(out.replace(" ", "")):
        return None
    return out


def _decode_b64(m: re.Match[str]) -> str:
    token = m.group(0)
    body = token.rstrip("=")
    if (
        not any(c.isdigit() or c in "+/_-" for c in body)
        and body.isalpha()
        and (body.islower() or body.isupper())
    ):
        return token  # a long plain word, not a payload
    padded = body + "=" * (-len(body) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return token
    out = _printable_text(raw)
    return token if out is None else f" {out} "


def _decode_hex(m: re.Match[str]) -> str:
    token = m.group(0)
    digits = _HEXCHARS.sub("", token)
    if decimal_only_hex(token, digits):
        return token  # numbers, not hex (``policies.decoding.codecs.decimal_only_hex``)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        return token
    out = _printable_text(raw)
    return token if out is None else f" {out} "


def views(text: str) -> list[tuple[str, str]]:
    """``[(view_name, text), ...]``: ``("plain", normalize(text))`` first, then every decoded view
    that differs from it (names: ``spaced``, ``base64``, ``hex``, ``rot13``). Never raises."""
    folded = _fold(text)
    plain = _collapse(folded)
    return [("plain", plain), *decoded_views(plain, folded)]


def _byte_table(keep: str, to: bytes | None = None) -> bytes:
    """A ``bytes.translate`` table: the ASCII characters of ``keep`` -> themselves (or ``to``),
    every other byte -> NUL."""
    return bytes((to[0] if to else c) if chr(c) in keep else 0 for c in range(256))


_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B64_BYTES = _byte_table(_LETTERS + "0123456789+/_-")
_HEX_BYTES = _byte_table("0123456789abcdefABCDEF :,")
_HEX_SEPARATORS = (b" ", b":", b",")
_SPACED_BYTES = bytes(
    ord("a") if chr(c) in _LETTERS else ord("s") if chr(c) in " ._-*/|" else 0 for c in range(256)
)


def _has_run(text: str, table: bytes, length: int, ignore: tuple[bytes, ...] = ()) -> bool:
    """Whether ``text`` has a run of characters kept by ``table`` (``_byte_table``) with at least
    ``length`` of them outside ``ignore``: a necessary condition for the base64 / hex patterns,
    checked with byte operations so that their regular expressions run only when they can match.
    Non-ASCII characters break runs (neither pattern matches them). Compiled in
    ``policies._native.has_run`` when it is built (the same answer, one pass, no copies)."""
    if _NATIVE is not None:
        return bool(_NATIVE.has_run(text, table, length, b"".join(ignore)))
    for run in text.encode("ascii", "replace").translate(table).split(b"\0"):
        if len(run) >= length and len(run) - sum(run.count(b) for b in ignore) >= length:
            return True
    return False


def _has_spaced_run(text: str) -> bool:
    """Whether ``text`` has four ASCII letters joined by single separators (``_SPACED`` needs
    that), by a byte search."""
    return b"asasasa" in text.encode("ascii", "replace").translate(_SPACED_BYTES)


def decoded_views(plain: str, folded: str | None = None) -> list[tuple[str, str]]:
    """The decoded views of an already normalised text (see ``views``); ``folded`` is the text
    before whitespace was collapsed (double spaces separate spaced-out words), default ``plain``.
    Cheap token-level pre-checks keep the regular expressions off ordinary prose."""
    out: list[tuple[str, str]] = []
    tokens = plain.split()
    if not tokens:
        return out
    lengths = list(map(len, tokens))
    long_tokens = max(lengths) >= 16
    source = plain if folded is None else folded
    if (
        (long_tokens or _spaced_tokens(tokens, lengths))
        and _has_spaced_run(source)
        and _SPACED.search(source)
    ):
        # a run of 4+ spaced letters is the trigger; then shorter runs ("a l l") are words too
        spaced = _SPACED_SHORT.sub(lambda m: _SPACE_SEP.sub("", m.group(0)), source)
        out.append(("spaced", _collapse(spaced)))
    if long_tokens and _has_run(plain, _B64_BYTES, 16) and _B64.search(plain):
        decoded = _B64.sub(_decode_b64, plain)
        if decoded != plain:
            out.append(("base64", " ".join(decoded.split())))
    prefixed = "\\x" in plain or "0x" in plain
    hex_run = (long_tokens or _hex_pairs(tokens, lengths) >= 8) and _has_run(
        plain, _HEX_BYTES, 16, _HEX_SEPARATORS
    )
    if (prefixed or hex_run) and _HEX.search(plain):
        decoded = _HEX.sub(_decode_hex, plain)
        if decoded != plain:
            out.append(("hex", " ".join(decoded.split())))
    low = plain.lower()
    named = "rot" in low and _ROT13_NAMED.search(plain) is not None
    if named or _reads_better_in_rot13(low.split()):
        out.append(("rot13", plain.translate(_ROT13)))
    return out


def _spaced_tokens(tokens: list[str], lengths: list[int]) -> bool:
    """Whether the tokens hint at spaced-out letters: three one-character tokens, or one token
    of 7+ characters whose 2nd, 4th and 6th characters are the same separator ("I.g.n.o.r.e").
    ``lengths``: ``len`` of each token. Counted with ``list.count`` first; the per-token test only
    runs on the long tokens of a text with fewer than three single characters."""
    if lengths.count(1) >= 3:
        return True
    for tok, n in zip(tokens, lengths, strict=True):
        if n >= 7 and tok[1] in _SEPARATORS and tok[3] == tok[1] and tok[5] == tok[1]:
            return True
    return False


def _hex_pairs(tokens: list[str], lengths: list[int]) -> int:
    """How many tokens are two hex digits (``lengths``: ``len`` of each token); 0 without
    looking when fewer than 8 tokens have two characters (the caller needs 8)."""
    if lengths.count(2) < 8:
        return 0
    return sum(
        1
        for tok, n in zip(tokens, lengths, strict=True)
        if n == 2 and tok[0] in _HEXDIGITS and tok[1] in _HEXDIGITS
    )


def _reads_better_in_rot13(words: list[str]) -> bool:
    """Whether the ROT13 of the lower-cased ``words`` has more common English words than they
    do (and more than two). One pass: a word's ROT13 is common iff the word is in the ROT13 of
    the common-word set."""
    rot = sum(map(_COMMON_ROT13.__contains__, words))
    if rot <= 2:
        return False  # most texts: one counting pass
    # not exclusive: "or" and its ROT13 "be" are both common
    return rot > sum(map(_COMMON.__contains__, words))
