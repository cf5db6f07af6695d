"""The hashed-feature model behind the ``prompt_injection`` policy (``HashedTextModel``).

The same features as ``policies.builtin.injection_features`` (character 3-5-grams of the
lower-cased normalised text, word unigrams and bigrams, the hand features, the second-stage
trees over the best view) without a vocabulary: every term is hashed into one of
``2 ** BUCKET_BITS`` buckets, and the model is a table of one weight and one idf per bucket. A
text costs the n-gram hashes (numpy), a crc32 per word, one gather and one ``np.unique``: no
dictionary look-up per term, and no second look-up for the word-only model (its buckets are the
word part of the same hashes).

Weights: ``(1 + ln tf) * idf`` per bucket, L2-normalised, dot the bucket weights, plus the hand
features times their coefficients, plus the intercept (scikit-learn's ``LogisticRegression`` on
that matrix, ``gateway.tools.train_injection_hashed``). The word-only logit (a second-stage input)
is the same over the word buckets with its own weights. Collisions between terms in one bucket are
part of the trained model (the trainer hashes the same way).

File: ``.npz`` (``numpy.load(allow_pickle=False)``; nothing executable): ``weights``,
``word_weights``, ``idf`` (float32, one per bucket), ``hand_coef`` (float64), ``meta`` (a JSON
string: ``intercept``, ``word_intercept``, ``threshold``, ``bucket_bits``, ``stage2`` as in
``injection_features.BoostedStage``, provenance).
"""

from __future__ import annotations

import json
import math
import re
import zlib
from importlib.resources.abc import Traversable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from policies.builtin.injection_features import (
    HAND_FEATURES,
    BoostedStage,
    ModelFileError,
    char_ngram_hashes,
    hand_features,
)
from policies.native import module as native_module

__all__ = ["BUCKET_BITS", "HashedTextModel", "buckets"]

BUCKET_BITS = 20
"""``2 ** 20`` buckets (1,048,576): 4 MB per float32 table."""

_WORD_BYTES = re.compile(rb"[a-z0-9]+(?:'[a-z]+)?")
_FIB = np.uint64(0x9E3779B97F4A7C15)
_WORD_TAG = np.uint64(1 << 40)
_BIGRAM_MULT = np.uint64(0x100000001B3)
_BIGRAM_TAG = np.uint64(7)

_NATIVE = native_module()
"""``policies._native`` (the compiled ``_all_buckets`` + ``_weighted_dot``), or ``None``: the
numpy reference below (``policies.native``). A module global: models are pickled to workers."""


def _word_hashes(low: str) -> NDArray[np.uint64]:
    """64-bit hashes of the word unigrams (crc32 of the UTF-8 word plus ``2 ** 40``) and bigrams
    (``h(a) * 0x100000001B3 + h(b) + 7``, wrapping) of a lower-cased text."""
    # the pattern is ASCII: on the UTF-8 bytes it finds the same words, already encoded
    words = _WORD_BYTES.findall(low.encode("utf-8", "surrogatepass"))
    if not words:
        return np.zeros(0, dtype=np.uint64)
    h = np.fromiter(map(zlib.crc32, words), dtype=np.uint64, count=len(words))
    h += _WORD_TAG
    if len(words) == 1:
        return h
    return np.concatenate([h, h[:-1] * _BIGRAM_MULT + h[1:] + _BIGRAM_TAG])


def buckets(low: str, bits: int = BUCKET_BITS) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``(character n-gram buckets, word buckets)`` of a lower-cased normalised text: each 64-bit
    hash (``char_ngram_hashes``, ``_word_hashes``) times the Fibonacci constant, top ``bits``
    bits (Knuth, TAOCP vol. 3, 6.4). Repeats kept (they are term counts)."""
    both, n_chars = _all_buckets(low, bits)
    wide = both.astype(np.intp)
    return wide[:n_chars], wide[n_chars:]


def _all_buckets(low: str, bits: int) -> tuple[NDArray[np.uint32], int]:
    """The character n-gram buckets then the word buckets of ``buckets`` in one array (computed
    with one multiply and one shift), and how many of them are character buckets. ``uint32``
    (``bits`` <= 32): sorting it is about twice as fast as sorting 64-bit integers."""
    chars = char_ngram_hashes(low)
    both = np.concatenate([chars, _word_hashes(low)])
    both *= _FIB
    both >>= np.uint64(64 - bits)
    return both.astype(np.uint32), chars.shape[0]


def _weighted_dot(
    terms: NDArray[Any], pairs: NDArray[np.uint64], weights: NDArray[np.float32] | None
) -> float:
    """``w @ weight[u]`` where ``u`` are the distinct buckets of ``terms`` and ``w`` their
    ``(1 + ln tf) * idf`` L2-normalised; 0.0 for no terms. ``pairs``: per bucket the float32 pair
    ``(idf, weight)`` packed in one 8-byte word, so that one gather fetches both (one cache miss
    per bucket instead of two: the tables are 4 MB each, and a 2,000-character text touches
    ~3,000 buckets); ``weights``: other weights to use instead of the packed ones. The distinct
    buckets come sorted, with their counts, as ``np.unique(terms, return_counts=True)`` gives
    them (the same sort, mask and differences without its checks)."""
    n = terms.shape[0]
    if n == 0:
        return 0.0
    s = np.sort(terms)
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(s[1:], s[:-1], out=first[1:])
    idx = np.flatnonzero(first)
    tf = np.empty(idx.shape[0], dtype=np.intp)
    np.subtract(idx[1:], idx[:-1], out=tf[:-1])
    tf[-1] = n - idx[-1]
    u = s[idx]
    both = pairs[u].view(np.float32)
    w = (1.0 + np.log(tf)) * both[0::2].astype(np.float64)
    norm = math.sqrt(float(w @ w))
    if norm > 0.0:
        w = w / norm
    weight = both[1::2] if weights is None else weights[u]
    return float(w @ weight.astype(np.float64))


class HashedTextModel:
    """Inference for the hashed model (module docstring). The same interface as
    ``LinearTextModel`` where ``injection_features.score_text`` uses it: ``evaluate(text)`` ->
    ``(logit, hand features, word buckets)``, ``word_logit(word buckets)``, ``stage2``,
    ``word_model`` (truthy), ``threshold``, ``vocab_size`` (the number of buckets)."""

    __slots__ = (
        "_hand_coef",
        "_pairs",
        "_word_weights",
        "bits",
        "intercept",
        "meta",
        "stage2",
        "threshold",
        "vocab_size",
        "word_intercept",
        "word_model",
    )

    def __init__(self, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]) -> None:
        self.bits = int(meta["bucket_bits"])
        if not 1 <= self.bits <= 32:  # buckets are sorted as uint32 (``_all_buckets``)
            raise ModelFileError(f"inconsistent hashed model: bucket_bits {self.bits} not in 1..32")
        n = 1 << self.bits
        weights = np.asarray(arrays["weights"], dtype=np.float32)
        self._word_weights = np.asarray(arrays["word_weights"], dtype=np.float32)
        idf = np.asarray(arrays["idf"], dtype=np.float32)
        self._hand_coef = np.asarray(arrays["hand_coef"], dtype=np.float64)
        if any(a.shape != (n,) for a in (weights, self._word_weights, idf)):
            raise ModelFileError(f"inconsistent hashed model: tables must hold {n} buckets")
        self._pairs = np.stack([idf, weights], axis=1).view(np.uint64).reshape(n)
        """Per bucket ``(idf, weight)`` as two float32 in one 8-byte word (``_weighted_dot``)."""
        if self._hand_coef.shape != (len(HAND_FEATURES),):
            raise ModelFileError(
                f"inconsistent hashed model: {len(HAND_FEATURES)} hand coefficients expected"
            )
        self.intercept = float(meta["intercept"])
        self.word_intercept = float(meta["word_intercept"])
        self.threshold = float(meta["threshold"])
        self.stage2 = BoostedStage(meta["stage2"])
        self.word_model = True
        self.vocab_size = n
        self.meta = {k: v for k, v in meta.items() if k != "stage2"}

    @classmethod
    def load(cls, path: Traversable) -> HashedTextModel:
        """Read an ``.npz`` written by ``gateway.tools.train_injection_hashed``. Raises
        ``ModelFileError`` when the file is missing, unreadable or inconsistent."""
        try:
            with path.open("rb") as fh, np.load(fh, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(str(arrays.pop("meta")))
            return cls(arrays, meta)
        except ModelFileError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"cannot read hashed model file {path}: {exc}") from exc

    def evaluate(self, text: str) -> tuple[float, list[float], NDArray[np.uint32]]:
        """``(logit, hand features, word buckets)`` of a normalised ``text``."""
        low = text.lower()
        words: NDArray[np.uint32]
        if _NATIVE is not None:
            dot, raw = _NATIVE.injection_dot(low, self.bits, self._pairs)
            z = self.intercept + dot
            words = np.frombuffer(raw, dtype=np.uint32)
        else:
            both, n_chars = _all_buckets(low, self.bits)
            z = self.intercept + _weighted_dot(both, self._pairs, None)
            words = both[n_chars:]
        hand = hand_features(text)
        z += float(self._hand_coef @ np.asarray(hand, dtype=np.float64))
        return z, hand, words

    def word_logit(self, words: NDArray[Any]) -> float:
        """The word-only logit of a text whose word buckets are ``words``."""
        if _NATIVE is not None and words.dtype == np.uint32:
            dot = _NATIVE.weighted_dot(words, self.bits, self._pairs, self._word_weights)
            return self.word_intercept + float(dot)
        return self.word_intercept + _weighted_dot(words, self._pairs, self._word_weights)
