"""Features and the exported linear model behind the ``prompt_injection`` policy.

One feature definition, used twice: by training (``policies.training.prompt_injection``, through
scikit-learn's ``TfidfVectorizer(analyzer=analyze)``) and by inference (``LinearTextModel``, a
few dictionary look-ups and a dot product, no scikit-learn on the hot path).

Input is a *normalised* text (``policies.builtin.normalize.normalize``). Features:

- sparse: lower-cased word unigrams (``w:``) and bigrams (``b:``) plus character n-grams (n = 3..5,
  over the lower-cased text padded with one space, represented by 64-bit hashes so that inference
  computes them with numpy instead of slicing strings), weighted ``(1 + ln tf) * idf`` and
  L2-normalised, exactly as ``TfidfTransformer(sublinear_tf=True, norm="l2")`` does;
- dense ("hand") features, appended after the sparse block: counts (``ln(1 + n)``) of
  instruction-override phrases, role-play / persona markers, system-prompt extraction phrases,
  output-forcing phrases, plus the text length (``ln(1 + characters) / 8``), the share of ASCII
  symbol characters and of upper-case ASCII letters, and the share of "noise" tokens (a letter plus
  two or more ASCII symbols: adversarial suffixes such as GCG's) overall and in the last quarter
  of the tokens; whether the text has several lines, and for one-line texts the share of the last
  20 tokens with a symbol inside them and the share of symbol characters in those tokens (GCG
  suffixes are one line of word salad; code and data pasted by benign users come in lines).

The model file is JSON (loaded with ``json``; nothing executable): ``vocabulary`` (word feature
strings and character n-gram hashes, in column order), ``idf``, ``coef`` (sparse columns then
hand features), ``intercept``, ``threshold``, ``char_ngrams`` and provenance fields.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from itertools import pairwise, repeat
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from policies.builtin.normalize import json_strings, views

__all__ = [
    "CHAR_NGRAMS",
    "HAND_FEATURES",
    "LinearTextModel",
    "ModelFileError",
    "analyze",
    "char_ngram_hashes",
    "hand_features",
    "phrase_counts",
    "score_text",
    "word_features",
]

CHAR_NGRAMS: tuple[int, ...] = (3, 4, 5)
"""Character n-gram lengths of the sparse block."""

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

_OVERRIDE = re.compile(
    r"\b(?:ignore|disregard|forget) (?:everything|anything|all|what)\b|"
    r"\b(?:ignore|disregard|forget|override|bypass|skip|abandon|drop|neglect)\b[^.!?\n]{0,40}?"
    r"\b(?:previous|prior|above|earlier|preceding|original|initial|all|any|your|the|these|those|every)\b"
    r"[^.!?\n]{0,30}?\b(?:instructions?|rules?|directives?|guidelines?|prompts?|commands?|restrictions?"
    r"|polic(?:y|ies)|programming|context|constraints?|filters?|guardrails?|orders?)\b"
)
_ROLEPLAY = re.compile(
    r"\b(?:you are now|you're now|act as|acting as|pretend(?:ing)? (?:to be|you)|role-?play|from now on"
    r"|stay in character|in character|persona|simulat(?:e|ion)|developer mode|dan|jailbr(?:eak|oken)"
    r"|do anything now|unfiltered|uncensored|unrestricted|amoral|no (?:ethical|moral)|without (?:any )?"
    r"(?:restrictions?|limitations?|filters?|censorship|ethics|morals)|hypothetical(?:ly)?|opposite mode"
    r"|evil|two responses|dual responses?)\b"
)
_EXTRACTION = re.compile(
    r"\b(?:system prompt|system message|initial (?:prompt|instructions)|your (?:instructions|rules|prompt)"
    r"|instructions (?:you were|above)|repeat (?:the|everything|all|your)|secret (?:key|password|word)"
    r"|(?:print|reveal|show|output|display|leak|tell me) [^.!?\n]{0,30}?(?:prompt|instructions|configuration"
    r"|password|secret))\b"
)
_FORCING = re.compile(
    r"\b(?:start (?:your|the) (?:response|answer|reply) with|begin (?:your|the) (?:response|answer|reply)"
    r"|respond only|answer only|always (?:respond|answer|reply)|never refuse|must not refuse|do not refuse"
    r"|don't refuse|never (?:say|mention)|without (?:any )?(?:warnings?|disclaimers?)|sure, here is)\b"
)

HAND_FEATURES: tuple[str, ...] = (
    "override_phrases",
    "roleplay_markers",
    "extraction_phrases",
    "forcing_phrases",
    "length",
    "symbol_share",
    "upper_share",
    "noise_tokens",
    "tail_noise_tokens",
    "multi_line",
    "one_line_tail_inner_symbols",
    "one_line_tail_symbol_share",
)
"""Names of the dense features, in column order after the sparse block."""


_HASH_MULT = np.uint64(1_000_003)


def char_ngram_hashes(low: str) -> NDArray[np.uint64]:
    """64-bit hashes of the character n-grams (``CHAR_NGRAMS``) of ``" " + low + " "``.

    Polynomial hash over Unicode code points (multiplier 1,000,003, wrapping modulo 2**64, the
    n-gram length mixed in last), computed with numpy for the whole text at once: no per-n-gram
    string is built. Collisions between the ~10**5 n-grams of a model are negligible at 64 bits.
    """
    padded = f" {low} "
    cps = np.frombuffer(padded.encode("utf-32-le"), dtype="<u4").astype(np.uint64)
    m = cps.shape[0]
    out: list[NDArray[np.uint64]] = []
    for n in CHAR_NGRAMS:
        if m < n:
            continue
        h = cps[: m - n + 1].copy()
        for k in range(1, n):
            h *= _HASH_MULT
            h += cps[k : m - n + 1 + k]
        h *= _HASH_MULT
        h += np.uint64(n)
        out.append(h)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)


def word_features(low: str) -> list[str]:
    """Word unigram (``w:``) and bigram (``b:``) features of a lower-cased normalised text."""
    words = _WORD.findall(low)
    feats = ["w:" + w for w in words]
    feats.extend([f"b:{a} {b}" for a, b in pairwise(words)])
    return feats


def analyze(text: str) -> list[str | int]:
    """Sparse features of a normalised ``text`` (repeats kept: they are term counts): the word
    features (strings) followed by the character n-gram hashes (ints). Used by training; inference
    takes the two parts separately (``word_features``, ``char_ngram_hashes``)."""
    low = text.lower()
    feats: list[str | int] = list(word_features(low))
    feats.extend(char_ngram_hashes(low).tolist())
    return feats


_PUNCT = b"!\"#$%&'()*+,-/:;<=>?@[\\]^_`{|}~."
_LETTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MINOR_PUNCT = b".,'"


def _punct(b: bytes) -> int:
    """Number of ASCII punctuation/symbol bytes in ``b``."""
    return len(b) - len(b.translate(None, _PUNCT))


def hand_features(text: str) -> list[float]:
    """Dense features of a normalised ``text``, in ``HAND_FEATURES`` order (all >= 0, mostly < 3).

    Character statistics count ASCII only (``text`` encoded with non-ASCII dropped)."""
    low = text.lower()
    n = len(text)
    b = text.encode("ascii", "ignore")
    letters = len(b) - len(b.translate(None, _LETTERS))
    upper = len(b) - len(b.translate(None, _UPPER))
    symbols = _punct(b) - (len(b) - len(b.translate(None, _MINOR_PUNCT)))
    tokens = text.split()
    count = len(tokens)
    tail_start = count - count // 4 if count >= 4 else count
    last_start = max(0, count - 20)
    noisy = noisy_tail = inner = last_punct = 0
    for i, t in enumerate(tokens):
        if t.isalnum():  # no ASCII symbol inside: neither noisy nor "inner"
            continue
        a = t.encode("ascii", "ignore")
        p = _punct(a)
        # noisy token: longer than 2, two or more symbols, and a letter (any script)
        if len(t) > 2 and p >= 2 and (len(a) < len(t) or len(a.translate(None, _LETTERS)) < len(a)):
            noisy += 1
            if i >= tail_start:
                noisy_tail += 1
        if i >= last_start:
            last_punct += p
            if len(a) > 2 and _punct(a[1:-1]) > 0:
                inner += 1
    last_n = count - last_start
    one_line = 0.0 if "\n" in text else 1.0
    last_len = sum(len(t) for t in tokens[last_start:]) + last_n - 1
    return [
        math.log1p(len(_OVERRIDE.findall(low))),
        math.log1p(len(_ROLEPLAY.findall(low))),
        math.log1p(len(_EXTRACTION.findall(low))),
        math.log1p(len(_FORCING.findall(low))),
        math.log1p(n) / 8.0,
        max(0, symbols) / n if n else 0.0,
        upper / letters if letters else 0.0,
        noisy / count if count else 0.0,
        noisy_tail / (count - tail_start) if count > tail_start else 0.0,
        1.0 - one_line,
        one_line * inner / last_n if last_n else 0.0,
        one_line * last_punct / last_len if last_len > 0 else 0.0,
    ]


def phrase_counts(text: str) -> dict[str, int]:
    """Counts of the phrase families in a normalised ``text``: ``override``, ``roleplay``,
    ``extraction``, ``forcing`` (the same patterns as the hand features)."""
    low = text.lower()
    return {
        "override": len(_OVERRIDE.findall(low)),
        "roleplay": len(_ROLEPLAY.findall(low)),
        "extraction": len(_EXTRACTION.findall(low)),
        "forcing": len(_FORCING.findall(low)),
    }


class ModelFileError(ValueError):
    """The model file is missing, unreadable or inconsistent (raised by ``LinearTextModel.load``)."""


class LinearTextModel:
    """Inference for the exported TF-IDF + hand-feature logistic regression.

    ``score(text)`` takes a normalised text and returns P(attack) in [0, 1]: the same number as
    the training pipeline's ``predict_proba(...)[:, 1]`` (up to float rounding).
    """

    __slots__ = (
        "_char_cols",
        "_char_hashes",
        "_coef_idf",
        "_hand_coef",
        "_idf",
        "_word_index",
        "intercept",
        "meta",
        "threshold",
        "vocab_size",
    )

    def __init__(
        self,
        vocabulary: Sequence[str | int],
        idf: Sequence[float],
        coef: Sequence[float],
        intercept: float,
        threshold: float,
        meta: dict[str, Any] | None = None,
    ) -> None:
        n = len(vocabulary)
        if len(idf) != n or len(coef) != n + len(HAND_FEATURES):
            raise ModelFileError(
                f"inconsistent model: {n} terms, {len(idf)} idf values, {len(coef)} coefficients "
                f"(expected {n + len(HAND_FEATURES)})"
            )
        words: dict[str, int] = {}
        hashes: list[int] = []
        cols: list[int] = []
        for i, term in enumerate(vocabulary):
            if isinstance(term, str):
                words[term] = i
            elif isinstance(term, int) and not isinstance(term, bool) and 0 <= term < 2**64:
                hashes.append(term)
                cols.append(i)
            else:
                raise ModelFileError(f"inconsistent model: term {i} is neither a string nor a 64-bit hash")
        if len(words) + len(set(hashes)) != n:
            raise ModelFileError("inconsistent model: repeated terms in the vocabulary")
        order = np.argsort(np.array(hashes, dtype=np.uint64), kind="stable")
        self._char_hashes = np.array(hashes, dtype=np.uint64)[order]
        self._char_cols = np.array(cols, dtype=np.intp)[order]
        self._word_index = words
        # One extra slot (index n, weight 0) for terms outside the vocabulary.
        self._idf = np.zeros(n + 1, dtype=np.float64)
        self._idf[:n] = np.asarray(idf, dtype=np.float64)
        self._coef_idf = np.zeros(n + 1, dtype=np.float64)
        self._coef_idf[:n] = np.asarray(coef[:n], dtype=np.float64) * self._idf[:n]
        self._hand_coef = np.asarray(coef[n:], dtype=np.float64)
        self.intercept = float(intercept)
        self.threshold = float(threshold)
        self.vocab_size = n
        self.meta = dict(meta or {})

    @classmethod
    def load(cls, path: Path) -> LinearTextModel:
        """Read a model JSON file written by ``policies.training.prompt_injection``.

        Raises ``ModelFileError`` when the file is missing, not JSON, or inconsistent.
        """
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"cannot read model file {path}: {exc}") from exc
        if doc.get("char_ngrams", list(CHAR_NGRAMS)) != list(CHAR_NGRAMS):
            raise ModelFileError(
                f"model file {path} was trained with character n-grams {doc['char_ngrams']}, "
                f"this code computes {list(CHAR_NGRAMS)}"
            )
        try:
            return cls(
                vocabulary=doc["vocabulary"],
                idf=doc["idf"],
                coef=doc["coef"],
                intercept=doc["intercept"],
                threshold=doc["threshold"],
                meta={k: v for k, v in doc.items() if k not in ("vocabulary", "idf", "coef")},
            )
        except (KeyError, TypeError) as exc:
            raise ModelFileError(f"model file {path} lacks a field: {exc}") from exc

    def _term_counts(self, text: str) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """``(columns, counts)`` of the vocabulary terms present in a normalised ``text``."""
        low = text.lower()
        n = self.vocab_size
        words = word_features(low)
        word_cols = np.fromiter(map(self._word_index.get, words, repeat(n)), dtype=np.intp, count=len(words))
        w_terms, w_tf = np.unique(word_cols[word_cols < n], return_counts=True)
        hashes, h_tf = np.unique(char_ngram_hashes(low), return_counts=True)
        table = self._char_hashes
        if not (hashes.size and table.size):
            return w_terms, w_tf
        pos = np.searchsorted(table, hashes)  # sorted queries: cache-friendly
        pos[pos == table.size] = 0
        hit = table[pos] == hashes
        return np.concatenate([w_terms, self._char_cols[pos[hit]]]), np.concatenate([w_tf, h_tf[hit]])

    def decision(self, text: str) -> float:
        """The logit (log-odds of attack) of a normalised ``text``."""
        terms, tf = self._term_counts(text)
        z = self.intercept
        if terms.size:
            w = 1.0 + np.log(tf)  # sublinear tf, as TfidfTransformer(sublinear_tf=True)
            wi = w * self._idf[terms]
            norm = math.sqrt(float(wi @ wi))
            if norm > 0.0:
                z += float(w @ self._coef_idf[terms]) / norm
        z += float(self._hand_coef @ np.asarray(hand_features(text), dtype=np.float64))
        return z

    def score(self, text: str) -> float:
        """P(attack) in [0, 1] for a normalised ``text``."""
        z = self.decision(text)
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)


CHUNK_CHARS = 16_000
"""Texts longer than this are scored in overlapping chunks (max over chunks), so an injection in
a long tool result is not diluted by the L2 normalisation over the whole document."""
MAX_CHARS = 64_000
"""At most this many characters of one text are scored (bounds the inline cost: ~40 ms)."""


def score_text(model: LinearTextModel, text: str) -> tuple[float, str]:
    """``(score, view)``: the model's highest P(attack) over the normalised views of a raw
    ``text`` (``policies.builtin.normalize.views``: plain, spaced, base64, hex, rot13) and the
    name of the view that gave it. A JSON object or array is scored on its string values
    (``normalize.json_strings``). Texts over ``CHUNK_CHARS`` are scored in chunks (overlap 1,000
    characters) up to ``MAX_CHARS``. An empty text scores ``(0.0, "plain")``."""
    best, best_view = 0.0, "plain"
    values = json_strings(text)
    if values is not None:
        text = values
    if len(text) > CHUNK_CHARS:
        step = CHUNK_CHARS - 1_000
        chunks = [text[i : i + CHUNK_CHARS] for i in range(0, min(len(text), MAX_CHARS), step)]
    else:
        chunks = [text]
    for chunk in chunks:
        for name, view in views(chunk):
            if not view:
                continue
            s = model.score(view)
            if s > best:
                best, best_view = s, name
    return best, best_view
