"""The plain ``content_safety`` computations as shipped before issue 11's CPU work (commit
1dd09f5): hashed features with one regex and one numpy pass per n-gram length, the lexicon's fold
per call, and the model's masked sums. ``tests/policies/test_content_safety_fast_paths.py``
compares the optimised modules with these on thousands of real texts; nothing else imports it."""

from __future__ import annotations

import math
import re

import numpy as np
from numpy.typing import NDArray

from policies.builtin.content_features import BUCKETS, MAX_CHARS
from policies.builtin.content_lexicon import Lexicon
from policies.builtin.content_safety_model import ContentSafetyModel

_BITS = 17
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SPACES = re.compile(r"\s+")
_P = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SALT = np.uint64(0xD6E8FEB86659FD93)
_ONE = np.ones(1, dtype=np.uint64)
with np.errstate(over="ignore"):
    _UP = np.concatenate((_ONE, np.cumprod(np.full(MAX_CHARS + 7, _P, dtype=np.uint64))))
    _INV = np.uint64(pow(int(_P), -1, 1 << 64))
    _DOWN = np.concatenate((_ONE, np.cumprod(np.full(MAX_CHARS + 7, _INV, dtype=np.uint64))))


def _clip(text: str) -> str:
    if len(text) > MAX_CHARS:
        half = MAX_CHARS // 2
        return f"{text[:half]} {text[-half:]}"
    return text


def _bucket(h: NDArray[np.uint64], salt: int) -> NDArray[np.int64]:
    with np.errstate(over="ignore"):
        mixed = (h + np.uint64(salt) * _SALT) * _MIX
    return (mixed >> np.uint64(64 - _BITS)).astype(np.int64)


def _prefix(s: str) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    codes = np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        g = np.cumsum(codes * _DOWN[: len(codes)], dtype=np.uint64)
    return codes, np.concatenate((np.zeros(1, dtype=np.uint64), g))


def _span(g: NDArray[np.uint64], a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        return _UP[b - 1] * (g[b] - g[a])


def columns(text: str) -> NDArray[np.int64]:
    """The old ``content_features.columns``."""
    low = _clip(_clip(text).lower())
    words = _WORD.findall(low)
    parts = []
    if words:
        codes, g = _prefix(f" {' '.join(words)} ")
        space = np.flatnonzero(codes == 32)
        parts += [_bucket(_span(g, space[:-1] + 1, space[1:]), 1)]
        parts += [_bucket(_span(g, space[:-2] + 1, space[2:]), 2)]
    body = _SPACES.sub(" ", low).strip()
    if body:
        codes, g = _prefix(f" {body} ")
        n, sp, grams = len(codes), np.cumsum(codes == 32), []
        with np.errstate(over="ignore"):
            for k in (2, 3, 4, 5):
                if n < k:
                    break
                h = _UP[k - 1 : n] * (g[k : n + 1] - g[: n - k + 1]) + np.uint64(k)
                grams.append(h[sp[k - 2 : n - 1] == sp[: n - k + 1]])
        parts.append(_bucket(np.concatenate(grams), 10) + BUCKETS)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def score(model: ContentSafetyModel, text: str, output: bool) -> float:
    """The old ``ContentSafetyModel.request`` / ``output``."""
    weights = model.output_w if output else model.request_w
    intercept = model.output_intercept if output else model.request_intercept
    cols = columns(text)
    words = cols < BUCKETS
    w, c = float(np.sum(model.idf2[cols[words]])), float(np.sum(model.idf2[cols[~words]]))
    nw, nc = (1.0 / math.sqrt(w) if w > 0 else 0.0), (1.0 / math.sqrt(c) if c > 0 else 0.0)
    z = intercept + nw * float(np.sum(weights[cols[words]])) + nc * float(np.sum(weights[cols[~words]]))
    return _sigmoid(z)


def category(model: ContentSafetyModel, text: str) -> str:
    """The old ``ContentSafetyModel.category(text).category``."""
    cols = columns(text)
    words = cols < BUCKETS
    w, c = float(np.sum(model.idf2[cols[words]])), float(np.sum(model.idf2[cols[~words]]))
    nw, nc = (1.0 / math.sqrt(w) if w > 0 else 0.0), (1.0 / math.sqrt(c) if c > 0 else 0.0)
    logits = model.category_intercept + model.category_w[:, cols] @ np.where(words, nw, nc)
    return model.categories[int(np.argmax(logits))]


_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_REPEAT = re.compile(r"([a-z])\1{2,}")
_SPACED = re.compile(r"\b(?:[a-z][\s._\-*]){2,}[a-z]\b")
_TOKEN = re.compile(r"[a-z]+")
_SENTENCE = re.compile(r"[^.!?\n]+")
_AGE = re.compile(r"\b(?:[1-9]|1[0-7])[\s-]?(?:years?[\s-]?old|yo|y/o)\b")


def fold(text: str) -> str:
    """The old ``content_lexicon.fold``."""
    return _REPEAT.sub(r"\1\1", text.lower().translate(_LEET))


def slurs(lex: Lexicon, text: str) -> int:
    """The old ``Lexicon.slurs``."""
    folded = fold(text)
    n = sum(1 for t in _TOKEN.findall(folded) if t in lex.slur_words)
    for m in _SPACED.finditer(folded):
        joined = re.sub(r"[^a-z]", "", m.group(0))
        n += any(w in joined for w in lex.slur_words)
    return n


def minor_sexual(lex: Lexicon, text: str) -> int:
    """The old ``Lexicon.minor_sexual`` (its plain per-sentence loop, without the pre-check)."""
    n = 0
    for m in _SENTENCE.finditer(text.lower()):
        tokens = set(_TOKEN.findall(fold(m.group(0))))
        minor = bool(tokens & lex.minor_words) or _AGE.search(m.group(0)) is not None
        n += bool(minor and tokens & lex.sexual_words)
    return n
