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

__all__ = ["DEFAULT_LEXICON", "Lexicon", "fold"]

DEFAULT_LEXICON = resources.files("policies") / "data" / "content_safety_lexicon.json"
"""The shipped lexicon (package data, read with ``importlib.resources``)."""

_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_REPEAT = re.compile(r"([a-z])\1{2,}")
_SPACED = re.compile(r"\b(?:[a-z][\s._\-*]){2,}[a-z]\b")
_TOKEN = re.compile(r"[a-z]+")
_SENTENCE = re.compile(r"[^.!?\n]+")
_AGE = re.compile(r"\b(?:[1-9]|1[0-7])[\s-]?(?:years?[\s-]?old|yo|y/o)\b")


def fold(text: str) -> str:
    """``text`` folded for matching (see the module docstring). Only characters that are letters
    after folding matter; length is not preserved."""
    low = text.lower().translate(_LEET)
    return _REPEAT.sub(r"\1\1", low)


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
        words = self.slur_words
        folded = fold(text)
        n = sum(1 for t in _TOKEN.findall(folded) if t in words)
        for m in _SPACED.finditer(folded):
            joined = re.sub(r"[^a-z]", "", m.group(0))
            n += any(w in joined for w in words)
        return n

    def minor_sexual(self, text: str) -> int:
        """Number of sentences of ``text`` naming a minor (a word or an age under 18) and an
        explicit sexual term together."""
        low = text.lower()
        # Pre-check over the whole text: its tokens (sentence ends as spaces: "!" is a boundary
        # here but a letter to ``fold``) are the union of every sentence's, so no sexual term
        # in the text means no sentence can count (most texts: one pass instead of one per sentence).
        if not set(_TOKEN.findall(fold(low.replace("!", " ")))) & self.sexual_words:
            return 0
        n = 0
        for m in _SENTENCE.finditer(low):
            sentence = m.group(0)
            tokens = set(_TOKEN.findall(fold(sentence)))
            minor = bool(tokens & self.minor_words) or _AGE.search(sentence) is not None
            if minor and tokens & self.sexual_words:
                n += 1
        return n
