"""Lexical rules of ``content_safety``: slurs (S10 hate) and sexual content involving minors (S4),
from the curated word lists in ``policies/data/content_safety_lexicon.json`` (see its ``about``).

Text is folded before matching: lower-cased, leetspeak digits and symbols mapped to letters
(``0->o 1->i 3->e 4->a 5->s 7->t @->a $->s !->i``), runs of three or more of one letter cut to
two. Whole words only, with the plural suffixes ``s`` / ``es``; besides, a run of single letters
separated by spaces, dots, dashes or underscores (``s.l.u.r``) is joined and searched for a slur
inside it (the run may have absorbed a neighbouring one-letter word such as "a"). Linear in the
text length. A finding names the category, never the word.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = ["DEFAULT_LEXICON", "Lexicon", "fold"]

DEFAULT_LEXICON = resources.files("policies") / "data" / "content_safety_lexicon.json"
"""The shipped lexicon (package data, read with ``importlib.resources``)."""

_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
_LEET_BYTES = bytes.maketrans("".join(_LEET).encode(), "".join(_LEET.values()).encode())
_REPEAT = re.compile(r"([a-z])\1{2,}")
_SPACED = re.compile(r"\b(?:[a-z][\s._\-*]){2,}[a-z]\b")
_TOKEN = re.compile(r"[a-z]+")
_SENTENCE = re.compile(r"[^.!?\n]+")
_AGE = re.compile(r"\b(?:[1-9]|1[0-7])[\s-]?(?:years?[\s-]?old|yo|y/o)\b")


def fold(text: str) -> str:
    """``text`` folded for matching (see the module docstring). Only characters that are letters
    after folding matter; length is not preserved."""
    return _fold_lower(text.lower())


def _fold_lower(low: str) -> str:
    """``fold`` of an already lower-cased text (``str.lower`` is idempotent on every code point).
    The leetspeak map is applied to the UTF-8 bytes (one table look-up per byte; its characters
    are ASCII, and an ASCII byte is never part of a multi-byte sequence; ``surrogatepass`` keeps
    lone surrogates), and the repeat rule's regex only runs when some letter occurs three times in
    a row (one numpy pass finds none in most texts)."""
    raw = low.encode("utf-8", "surrogatepass").translate(_LEET_BYTES)
    low = raw.decode("utf-8", "surrogatepass")
    return _REPEAT.sub(r"\1\1", low) if _has_letter_run(low) else low


_SHORT = 256
"""Below this many characters the regular expression itself is cheaper than the numpy pass."""


def _has_letter_run(text: str) -> bool:
    """Whether ``text`` has one of ``a``..``z`` three times in a row (what ``_REPEAT`` matches)."""
    if len(text) < _SHORT:
        return _REPEAT.search(text) is not None
    if text.isascii():
        c = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    else:
        c = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    same = c[1:] == c[:-1]
    run = same[1:] & same[:-1]
    if not run.any():
        return False
    third = c[2:][run]
    return bool(((third >= 97) & (third <= 122)).any())


def _may_be_spaced(tokens: list[str]) -> bool:
    """False when ``_SPACED`` cannot match: each of its letters is a one-letter ``[a-z]+`` token
    (bounded by a word boundary or a separator), and they are consecutive tokens, so a match
    needs three one-letter tokens in a row. Cheaper than the regex on texts without."""
    lengths = list(map(len, tokens))
    if lengths.count(1) < 3:
        return False
    one = np.array(lengths) == 1
    return bool((one[:-2] & one[1:-1] & one[2:]).any())


def _forms(words: list[str]) -> frozenset[str]:
    out: set[str] = set()
    for w in words:
        out |= {w, w + "s", w + "es"}
    return frozenset(out)


@dataclass(frozen=True, slots=True, repr=False)
class Lexicon:
    """The loaded word lists. ``slurs(text)`` and ``minor_sexual(text)`` are pure."""

    slur_words: frozenset[str]
    minor_words: frozenset[str]
    sexual_words: frozenset[str]

    def __repr__(self) -> str:  # never print the word lists
        return f"Lexicon({len(self.slur_words)} slur forms)"

    @classmethod
    def load(cls) -> Lexicon:
        """Read the shipped JSON lists (``DEFAULT_LEXICON``). Raises ``ValueError`` for a missing or
        malformed file."""
        path = DEFAULT_LEXICON
        try:
            raw = json.loads(DEFAULT_LEXICON.read_text(encoding="utf-8"))
            return cls(_forms(raw["S10"]), _forms(raw["S4_minor_terms"]), _forms(raw["S4_sexual_terms"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read content-safety lexicon {path}: {exc}") from exc

    def slurs(self, text: str) -> int:
        """Number of slur occurrences in ``text`` (after ``fold``)."""
        folded = fold(text)
        return self._slurs(folded, _TOKEN.findall(folded))

    def minor_sexual(self, text: str) -> int:
        """Number of sentences of ``text`` naming a minor (a word or an age under 18) and an
        explicit sexual term together."""
        low = text.lower()
        return self._minor_sexual(low, _TOKEN.findall(fold(low.replace("!", " "))))

    def scan(self, text: str) -> tuple[int, int]:
        """``(slurs(text), minor_sexual(text))`` with one lower-casing, one ``fold`` and one
        tokenisation of ``text`` shared by both rules (a second fold only when ``text`` has a
        "!", which is a letter to ``fold`` but a sentence end to ``minor_sexual``)."""
        low = text.lower()
        folded = _fold_lower(low)
        tokens = _TOKEN.findall(folded)
        whole = _TOKEN.findall(fold(low.replace("!", " "))) if "!" in low else tokens
        return self._slurs(folded, tokens), self._minor_sexual(low, whole)

    def _slurs(self, folded: str, tokens: list[str]) -> int:
        words = self.slur_words
        n = 0 if words.isdisjoint(tokens) else sum(map(words.__contains__, tokens))
        if not _may_be_spaced(tokens):
            return n
        for m in _SPACED.finditer(folded):
            joined = re.sub(r"[^a-z]", "", m.group(0))
            n += any(w in joined for w in words)
        return n

    def _minor_sexual(self, low: str, whole: list[str]) -> int:
        # Pre-check over the whole text (``whole``: its folded tokens, sentence ends as spaces,
        # since "!" is a boundary here but a letter to ``fold``): they are the union of every
        # sentence's, so no sexual term in the text means no sentence can count (most texts: one
        # pass instead of one per sentence).
        if self.sexual_words.isdisjoint(whole):
            return 0
        n = 0
        for m in _SENTENCE.finditer(low):
            sentence = m.group(0)
            tokens = set(_TOKEN.findall(fold(sentence)))
            minor = bool(tokens & self.minor_words) or _AGE.search(sentence) is not None
            if minor and tokens & self.sexual_words:
                n += 1
        return n
