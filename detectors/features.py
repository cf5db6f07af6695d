"""Text features shared by the detectors: tokens and sentences with character spans, quoted-speech
spans, the prompt of a conversation, and the stateless hashed n-gram featuriser used by the shipped
models (so a model is a few numpy arrays, never a pickled object).

All offsets are character offsets into the given string (end exclusive), so evidence can point a
reviewer at the exact text.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer

from rollguard.types import Message, text_of

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
_SENT_END = re.compile(r"[.!?]+[\"'”’)]*(?=\s)|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)")
_QUOTE_PAIRS = (('"', '"'), ("“", "”"))


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of text with its character offsets (end exclusive)."""

    start: int
    end: int
    text: str


def words(text: str) -> list[Span]:
    """Word tokens (letters/digits, with an inner apostrophe: "can't", "I’m") with their spans."""
    return [Span(m.start(), m.end(), m.group(0)) for m in _WORD.finditer(text)]


def sentences(text: str) -> list[Span]:
    """Sentence spans: split after ``.!?`` followed by whitespace, at blank lines and before list
    items. Leading/trailing whitespace is excluded from each span; empty pieces are dropped."""
    out: list[Span] = []
    start = 0
    for m in _SENT_END.finditer(text):
        _add_span(text, start, m.end(), out)
        start = m.end()
    _add_span(text, start, len(text), out)
    return out


def _add_span(text: str, start: int, end: int, out: list[Span]) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return
    lead = len(piece) - len(piece.lstrip())
    s = start + lead
    out.append(Span(s, s + len(stripped), stripped))


def quoted_spans(text: str) -> list[tuple[int, int]]:
    """Spans of quoted speech (straight double quotes paired left to right, and curly quotes),
    including the quote marks. An unpaired quote opens nothing."""
    spans: list[tuple[int, int]] = []
    for open_q, close_q in _QUOTE_PAIRS:
        i = 0
        while True:
            a = text.find(open_q, i)
            if a < 0:
                break
            b = text.find(close_q, a + 1)
            if b < 0:
                break
            spans.append((a, b + 1))
            i = b + 1
    return sorted(spans)


def mask_spans(text: str, spans: Iterable[tuple[int, int]], fill: str = " ") -> str:
    """``text`` with every span replaced by ``fill`` characters (offsets are preserved)."""
    chars = list(text)
    for a, b in spans:
        for i in range(max(a, 0), min(b, len(chars))):
            chars[i] = fill
    return "".join(chars)


def last_user_text(messages: Sequence[Message]) -> str:
    """The text of the last ``user`` message ('' when there is none)."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return text_of(m.get("content"))
    return ""


def turns_of(messages: Sequence[Message]) -> list[tuple[str, str]]:
    """``(role, text)`` for every user/assistant message, in order."""
    out: list[tuple[str, str]] = []
    for m in messages:
        if isinstance(m, dict) and m.get("role") in ("user", "assistant"):
            out.append((str(m["role"]), text_of(m.get("content"))))
    return out


def compression_ratio(text: str) -> float:
    """Raw UTF-8 bytes over zlib-compressed bytes (level 6). ~1.0-2.5 for ordinary prose of a few
    hundred characters; degenerate loops compress far better (>= 4). 1.0 for empty text."""
    raw = text.encode("utf-8")
    if not raw:
        return 1.0
    return len(raw) / len(zlib.compress(raw, 6))


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """Contiguous ``n``-grams of ``tokens``."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def word_hasher(n_features: int = 2**18, ngram_range: tuple[int, int] = (1, 2)) -> HashingVectorizer:
    """The stateless word n-gram featuriser of the shipped models (lower-cased, apostrophes kept,
    raw counts; IDF and L2 normalisation are applied by ``tfidf``)."""
    return HashingVectorizer(
        n_features=n_features,
        ngram_range=ngram_range,
        alternate_sign=False,
        norm=None,
        token_pattern=r"(?u)\b\w[\w'’]*\b",  # noqa: S106 (a regex, not a password)
        lowercase=True,
        dtype=np.float32,
    )


def tfidf(counts: Any, idf: np.ndarray) -> sparse.csr_matrix:
    """Sublinear TF-IDF with L2 rows: ``(1 + log tf) * idf``, each row scaled to unit norm.
    ``counts`` is a sparse (n_docs, n_features) count matrix, ``idf`` a (n_features,) vector."""
    x = sparse.csr_matrix(counts, dtype=np.float32, copy=True)
    x.data = 1.0 + np.log(x.data)
    x = x.multiply(idf.reshape(1, -1)).tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / norms) @ x)


def fit_idf(counts: Any) -> np.ndarray:
    """Smoothed IDF ``log((1 + n) / (1 + df)) + 1`` (scikit-learn's formula) from a count matrix."""
    x = sparse.csr_matrix(counts)
    n = x.shape[0]
    df = np.bincount(x.indices, minlength=x.shape[1])
    out: np.ndarray = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
    return out
