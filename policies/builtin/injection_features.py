"""Features and the exported linear model behind the ``prompt_injection`` policy.

One feature definition, used twice: by training (``policies.training.prompt_injection``, through
scikit-learn's ``TfidfVectorizer(analyzer=analyze)``) and by inference (``LinearTextModel``, a
few dictionary look-ups and a dot product, no scikit-learn on the hot path).

Input is a *normalised* text (``policies.builtin.normalize.normalize``). Features:

- sparse: lower-cased word unigrams (``w:``) and bigrams (``b:``) plus character n-grams (n = 3..5,
  over the lower-cased text padded with one space), weighted ``(1 + ln tf) * idf`` and
  L2-normalised, exactly as ``TfidfVectorizer(sublinear_tf=True, norm="l2")`` does;
- dense ("hand") features, appended after the sparse block: counts (``ln(1 + n)``) of
  instruction-override phrases, role-play / persona markers, system-prompt extraction phrases,
  output-forcing phrases, plus the text length (``ln(1 + characters) / 8``), the share of ASCII
  symbol characters and of upper-case ASCII letters, and the share of "noise" tokens (a letter plus
  two or more ASCII symbols: adversarial suffixes such as GCG's) overall and in the last quarter
  of the tokens.

The model file is JSON (loaded with ``json``; nothing executable): ``vocabulary`` (feature strings
in column order), ``idf``, ``coef`` (sparse columns then hand features), ``intercept``,
``threshold`` and provenance fields.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from policies.builtin.normalize import views

__all__ = [
    "CHAR_NGRAMS",
    "HAND_FEATURES",
    "LinearTextModel",
    "ModelFileError",
    "analyze",
    "hand_features",
    "score_text",
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
_NOISE = re.compile(r"[!-/:-@\[-`{-~]")  # ASCII punctuation and symbols

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
)
"""Names of the dense features, in column order after the sparse block."""


def analyze(text: str) -> list[str]:
    """Sparse feature strings of a normalised ``text`` (repeats kept: they are term counts).

    Words: ``[a-z0-9]+('[a-z]+)?`` on the lower-cased text. Cost: about 3 strings per character.
    """
    low = text.lower()
    words = _WORD.findall(low)
    feats = ["w:" + w for w in words]
    feats.extend([f"b:{a} {b}" for a, b in zip(words, words[1:], strict=False)])
    padded = f" {low} "
    m = len(padded)
    for n in CHAR_NGRAMS:
        feats.extend([padded[i : i + n] for i in range(m - n + 1)])
    return feats


def _noisy(token: str) -> bool:
    return len(token) > 2 and len(_NOISE.findall(token)) >= 2 and any(c.isalpha() for c in token)


def hand_features(text: str) -> list[float]:
    """Dense features of a normalised ``text``, in ``HAND_FEATURES`` order (all >= 0, mostly < 3)."""
    low = text.lower()
    n = len(text)
    tokens = text.split()
    letters = sum(1 for c in text if c.isascii() and c.isalpha())
    upper = sum(1 for c in text if c.isascii() and c.isupper())
    symbols = len(_NOISE.findall(text)) - text.count(".") - text.count(",") - text.count("'")
    noisy = [_noisy(t) for t in tokens]
    tail = noisy[len(noisy) - len(noisy) // 4 :] if len(noisy) >= 4 else []
    return [
        math.log1p(len(_OVERRIDE.findall(low))),
        math.log1p(len(_ROLEPLAY.findall(low))),
        math.log1p(len(_EXTRACTION.findall(low))),
        math.log1p(len(_FORCING.findall(low))),
        math.log1p(n) / 8.0,
        max(0, symbols) / n if n else 0.0,
        upper / letters if letters else 0.0,
        sum(noisy) / len(noisy) if noisy else 0.0,
        sum(tail) / len(tail) if tail else 0.0,
    ]


class ModelFileError(ValueError):
    """The model file is missing, unreadable or inconsistent (raised by ``LinearTextModel.load``)."""


class LinearTextModel:
    """Inference for the exported TF-IDF + hand-feature logistic regression.

    ``score(text)`` takes a normalised text and returns P(attack) in [0, 1]: the same number as
    the training pipeline's ``predict_proba(...)[:, 1]`` (up to float rounding).
    """

    __slots__ = ("_coef_idf", "_hand_coef", "intercept", "meta", "threshold", "vocab_size")

    def __init__(
        self,
        vocabulary: Sequence[str],
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
        # Per term: (idf, coef * idf) so the score needs one multiply per present term.
        self._coef_idf: dict[str, tuple[float, float]] = {
            t: (float(i), float(c) * float(i)) for t, i, c in zip(vocabulary, idf, coef, strict=False)
        }
        self._hand_coef = [float(c) for c in coef[n:]]
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

    def decision(self, text: str) -> float:
        """The logit (log-odds of attack) of a normalised ``text``."""
        table = self._coef_idf
        num = 0.0
        sq = 0.0
        for feat, tf in Counter(analyze(text)).items():
            entry = table.get(feat)
            if entry is None:
                continue
            w = 1.0 + math.log(tf) if tf > 1 else 1.0
            idf, cidf = entry
            num += w * cidf
            sq += (w * idf) ** 2
        z = self.intercept + (num / math.sqrt(sq) if sq > 0.0 else 0.0)
        for c, x in zip(self._hand_coef, hand_features(text), strict=True):
            z += c * x
        return z

    def score(self, text: str) -> float:
        """P(attack) in [0, 1] for a normalised ``text``."""
        z = self.decision(text)
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)


def score_text(model: LinearTextModel, text: str) -> tuple[float, str]:
    """``(score, view)``: the model's highest P(attack) over the normalised views of a raw
    ``text`` (``policies.builtin.normalize.views``: plain, spaced, base64, hex, rot13) and the
    name of the view that gave it. An empty text scores ``(0.0, "plain")``."""
    best, best_view = 0.0, "plain"
    for name, view in views(text):
        if not view:
            continue
        s = model.score(view)
        if s > best:
            best, best_view = s, name
    return best, best_view
