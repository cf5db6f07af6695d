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
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["BUCKETS", "BUCKET_BITS", "MAX_CHARS", "WIDTH", "block_columns", "columns", "prepared"]

_BITS = 17
BUCKET_BITS = _BITS
"""Bits of a block's column (``policies._native.content_blocks`` takes it)."""
BUCKETS = 1 << _BITS
"""Columns per block (words, characters); the feature vector has ``WIDTH = 2 * BUCKETS`` columns:
words in ``[0, BUCKETS)``, characters in ``[BUCKETS, 2 * BUCKETS)``."""
WIDTH = 2 * BUCKETS
MAX_CHARS = 8_000
"""Characters scored per text: the head and the tail halves of a longer text (a harmful request
is stated near the start or the end; the bound keeps the cost linear and small)."""

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
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


_UP, _DOWN = _powers(2 * MAX_CHARS + 16)
"""``P**k`` and ``P**-k`` modulo 2**64: the hash of ``s[a:b]`` is ``P**(b-1) * (G[b] - G[a])``
with ``G`` the prefix sums of ``s[j] * P**-j``, so every n-gram and word hashes in one vector op.
The hash does not depend on where ``s[a:b]`` lies, so the words' string and the characters'
string share one prefix pass (``block_columns``; each at most ``MAX_CHARS + 3`` characters)."""


def _clip(text: str) -> str:
    if len(text) > MAX_CHARS:
        half = MAX_CHARS // 2
        return f"{text[:half]} {text[-half:]}"
    return text


_SHIFT = np.uint64(64 - _BITS)
with np.errstate(over="ignore"):
    # bucket(h, salt) = ((h + salt * _SALT) * _MIX) >> _SHIFT, with the multiplication by _MIX
    # distributed (exact modulo 2**64): P**k * _MIX in one table, the salts times _MIX as constants
    _UP_MIX = _UP * _MIX
    _UNIGRAM = np.uint64(1) * _SALT * _MIX
    _BIGRAM = np.uint64(2) * _SALT * _MIX
    _CHARGRAM = (np.array(_NGRAMS, dtype=np.uint64)[:, None] + np.uint64(10) * _SALT) * _MIX
    """Per row k = 2..5: (k + 10 * _SALT) * _MIX (a character n-gram's hash has its length added)."""
_EMPTY = np.zeros(0, dtype=np.int64)


def _prefix(s: str) -> tuple[NDArray[np.uint32], NDArray[np.uint64]]:
    """``(codes, G)``: the code points of ``s`` and the prefix sums ``G`` of ``codes * P**-j``
    (``G[0] = 0``), with four zeros after ``G[len(s)]`` so that every window start has its 2-5 ends."""
    # surrogatepass: a lone surrogate ("\ud800", valid in JSON) must not raise
    codes = np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    n = len(codes)
    g = np.zeros(n + 5, dtype=np.uint64)
    np.multiply(codes, _DOWN[:n], out=g[1 : n + 1])  # array arithmetic wraps modulo 2**64
    np.cumsum(g[1 : n + 1], out=g[1 : n + 1])
    return codes, g


def _rows(a: NDArray[Any], rows: int, n: int) -> NDArray[Any]:
    """A read-only view ``v[j, i] = a[i + j]`` of shape ``(rows, n)`` (``a`` contiguous, with at
    least ``n + rows - 1`` items); cheaper to build than ``sliding_window_view``."""
    v: NDArray[Any] = np.ndarray((rows, n), a.dtype, a, 0, (a.itemsize, a.itemsize))
    v.flags.writeable = False
    return v


_UP_MIX_ROWS = _rows(_UP_MIX, 5, len(_UP_MIX) - 4)
"""``_UP_MIX_ROWS[j, a] = P**(a + j) * _MIX``."""


def _words(codes: NDArray[np.uint32], g: NDArray[np.uint64], m: int) -> NDArray[np.int64]:
    """Word 1-2-gram buckets of the words' string ``" w1 w2 ... "``, ``codes[:m]``."""
    space = np.flatnonzero(codes[:m] == 32)  # words lie between consecutive spaces
    b = space[1:]
    # word i is s[a_i:b_i] and bigram i is s[a_i:b_(i+1)], hashed P**(b-1) * (G[b] - G[a])
    up, gb, ga = _UP_MIX[b - 1], g[b], g[space[:-1] + 1]
    h = np.concatenate((up * (gb - ga) + _UNIGRAM, up[1:] * (gb[1:] - ga[:-1]) + _BIGRAM))
    return (h >> _SHIFT).view(np.int64)  # < 2**_BITS, so the same value as int64


def _chars(codes: NDArray[np.uint32], g: NDArray[np.uint64], m: int) -> NDArray[np.int64]:
    """Character n-gram buckets in ``[0, BUCKETS)`` (not yet offset by ``BUCKETS``) of the
    characters' string ``" body "``, ``codes[m:]``."""
    n = len(codes) - m
    # all 2-5 character windows [a, a + k) at once, rows k = 2..5, columns a = 0 .. n - 1; row
    # order then column order is the order of one pass per k (the scores' sums see the same order).
    # Kept: no space inside (scikit-learn's char_wb): sp[a + k - 2] == sp[a], sp the space counts;
    # k = 2 always, but for a = n - 1 (past the end). A window past the end (a + k > n) fails the
    # test for k > 2: sp[n - 1] counts the final space, and sp is padded with -1.
    sp = np.full(n + 3, -1, dtype=np.int64)
    np.cumsum(codes[m:] == 32, out=sp[:n])
    spaces = _rows(sp, 4, n)
    keep = np.empty((4, n), dtype=bool)
    keep[0] = True
    keep[0, n - 1] = False
    np.equal(spaces[1:], spaces[0], out=keep[1:])
    ends = _rows(g[m:], 6, n)  # ends[j, a] = G[m + a + j]
    h: NDArray[np.uint64] = _UP_MIX_ROWS[1:5, m : m + n] * (ends[2:6] - ends[0]) + _CHARGRAM
    return (h[keep] >> _SHIFT).view(np.int64)


def prepared(text: str) -> str:
    """The lower-cased text whose n-grams ``block_columns`` hashes (clipped to ``MAX_CHARS``
    before and after lower-casing); what ``policies._native.content_blocks`` takes."""
    return _clip(_clip(text).lower())  # lower() can lengthen a text ("İ" -> "i̇")


def block_columns(text: str) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``(words, characters)``: the hashed feature columns of ``text`` per block, one per
    occurrence (unsorted, repeats kept), both in ``[0, BUCKETS)``: the character block's columns
    are relative to its start (``columns`` adds ``BUCKETS``). Texts longer than ``MAX_CHARS`` are
    clipped to their head and tail."""
    low = prepared(text)
    words = _WORD.findall(low)
    body = " ".join(low.split())  # = re.sub(r"\s+", " ", low).strip(): both use str.isspace
    if not body:  # no word either: words hold no space
        return _EMPTY, _EMPTY
    head = f" {' '.join(words)} " if words else ""
    codes, g = _prefix(f"{head} {body} ")
    m = len(head)
    return (_words(codes, g, m) if words else _EMPTY), _chars(codes, g, m)


def columns(text: str) -> NDArray[np.int64]:
    """The hashed feature columns of ``text``, one per occurrence (unsorted, repeats kept), in
    ``[0, WIDTH)``: words below ``BUCKETS``, characters from ``BUCKETS`` on. Texts longer than
    ``MAX_CHARS`` are clipped to their head and tail."""
    words, chars = block_columns(text)
    return np.concatenate((words, chars + BUCKETS))
