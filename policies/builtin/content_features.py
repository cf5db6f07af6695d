"""Hashed text features of the ``content_safety`` models: word 1-2-grams and character 2-5-grams,
each hashed into its own block of ``BUCKETS`` columns, all computed with a few numpy vector
operations (no Python loop per n-gram).

- Words: lower-cased ``[a-z0-9]+('[a-z]+)?`` tokens, unigrams and bigrams.
- Characters: the lower-cased text with whitespace runs cut to one space and a space at both ends;
  every 2-5 character window without a space inside (scikit-learn's ``char_wb``: a window may
  start or end at a space).
- Hash: a polynomial hash modulo 2**64 of the window's code points, from prefix sums of
  ``code * P**-j`` (``P`` odd, hence invertible), mixed with a salt per kind (unigram, bigram,
  character n-gram and its length) and a multiplicative step, top ``_BITS`` bits kept.

The trainer (``gateway/tools/train_content_safety.py``) builds its matrices with ``columns`` too,
so training and inference cannot disagree. Cost: linear in the text length (see
``docs/policies.md`` for the measured latency).
"""

from __future__ import annotations

import re

import numpy as np
from numpy.typing import NDArray

__all__ = ["BUCKETS", "MAX_CHARS", "WIDTH", "columns"]

_BITS = 17
BUCKETS = 1 << _BITS
"""Columns per block (words, characters); the feature vector has ``WIDTH = 2 * BUCKETS`` columns:
words in ``[0, BUCKETS)``, characters in ``[BUCKETS, 2 * BUCKETS)``."""
WIDTH = 2 * BUCKETS
MAX_CHARS = 8_000
"""Characters scored per text: the head and the tail halves of a longer text (a harmful request
is stated near the start or the end; the bound keeps the cost linear and small)."""

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SPACES = re.compile(r"\s+")
_NGRAMS = (2, 3, 4, 5)
_P = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SALT = np.uint64(0xD6E8FEB86659FD93)


def _powers(n: int) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    inv = pow(int(_P), -1, 1 << 64)  # _P is odd, so invertible modulo 2**64
    with np.errstate(over="ignore"):
        up = np.cumprod(np.full(n, _P, dtype=np.uint64), dtype=np.uint64)
        down = np.cumprod(np.full(n, np.uint64(inv), dtype=np.uint64), dtype=np.uint64)
    one = np.ones(1, dtype=np.uint64)
    return np.concatenate((one, up[:-1])), np.concatenate((one, down[:-1]))


_UP, _DOWN = _powers(MAX_CHARS + 8)
"""``P**k`` and ``P**-k`` modulo 2**64: the hash of ``s[a:b]`` is ``P**(b-1) * (G[b] - G[a])``
with ``G`` the prefix sums of ``s[j] * P**-j``, so every n-gram and word hashes in one vector op."""


def _clip(text: str) -> str:
    if len(text) > MAX_CHARS:
        half = MAX_CHARS // 2
        return f"{text[:half]} {text[-half:]}"
    return text


def _bucket(h: NDArray[np.uint64], salt: int) -> NDArray[np.int64]:
    with np.errstate(over="ignore"):
        mixed = (h + np.uint64(salt) * _SALT) * _MIX
    return (mixed >> np.uint64(64 - _BITS)).astype(np.int64)  # [0, BUCKETS)


def _prefix(s: str) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """``(codes, G)``: the code points of ``s`` and the prefix sums ``G`` of ``codes * P**-j``."""
    # surrogatepass: a lone surrogate ("\ud800", valid in JSON) must not raise
    codes = np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        g = np.cumsum(codes * _DOWN[: len(codes)], dtype=np.uint64)
    return codes, np.concatenate((np.zeros(1, dtype=np.uint64), g))


def _span(g: NDArray[np.uint64], a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        return _UP[b - 1] * (g[b] - g[a])


def _word_columns(low: str) -> NDArray[np.int64]:
    words = _WORD.findall(low)
    if not words:
        return np.zeros(0, dtype=np.int64)
    codes, g = _prefix(f" {' '.join(words)} ")
    space = np.flatnonzero(codes == 32)  # words lie between consecutive spaces
    uni = _bucket(_span(g, space[:-1] + 1, space[1:]), 1)
    bi = _bucket(_span(g, space[:-2] + 1, space[2:]), 2)
    return np.concatenate((uni, bi))


def _char_columns(low: str) -> NDArray[np.int64]:
    body = _SPACES.sub(" ", low).strip()
    if not body:
        return np.zeros(0, dtype=np.int64)
    codes, g = _prefix(f" {body} ")
    n = len(codes)
    sp = np.cumsum(codes == 32)
    parts = []
    with np.errstate(over="ignore"):
        for k in _NGRAMS:
            if n < k:
                break
            # windows [a, a + k) for a = 0 .. n - k, all as slices: hash P**(a+k-1) * (G[a+k] - G[a])
            h = _UP[k - 1 : n] * (g[k : n + 1] - g[: n - k + 1]) + np.uint64(k)
            keep = sp[k - 2 : n - 1] == sp[: n - k + 1]  # no space inside (scikit-learn's char_wb)
            parts.append(h[keep])
    return _bucket(np.concatenate(parts), 10) + BUCKETS


def columns(text: str) -> NDArray[np.int64]:
    """The hashed feature columns of ``text``, one per occurrence (unsorted, repeats kept), in
    ``[0, WIDTH)``: words below ``BUCKETS``, characters from ``BUCKETS`` on. Texts longer than
    ``MAX_CHARS`` are clipped to their head and tail."""
    low = _clip(_clip(text).lower())  # lower() can lengthen a text ("İ" -> "i̇")
    return np.concatenate((_word_columns(low), _char_columns(low)))
