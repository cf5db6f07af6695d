"""Features and the exported linear model behind the ``prompt_injection`` policy.

One feature definition, used twice: by training (``gateway.tools.train_injection``, through
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

Second stage (optional, ``BoostedStage``): small gradient-boosted trees (scikit-learn's
``HistGradientBoostingClassifier``, exported as node arrays) over a dense vector: the linear
model's logit on its best view, the hand features of that view, the ``GCG_FEATURES`` (shape of
the last 25 tokens: camel-case joins, letter/symbol alternation, symbol contrast with the head,
unbalanced brackets, character-class changes, mid-sentence capitals) and the logit of a separate
word-only model (``WordModel``: TF-IDF over the same word 1-2-grams, no character n-grams, no hand
features) on the same view. The trees combine what the linear model cannot: e.g. a middling logit
*and* a word-salad tail (GCG suffixes), a middling logit on a one-line math / role-play request
(benign), or a character-level and a word-level model that disagree.

The model file is JSON (loaded with ``json``; nothing executable): ``vocabulary`` (word feature
strings and character n-gram hashes, in column order), ``idf``, ``coef`` (sparse columns then
hand features), ``intercept``, ``threshold``, ``char_ngrams``, optionally ``stage2`` (``features``,
``baseline``, ``trees``: per tree the node arrays ``feature``, ``threshold``, ``left``, ``right``,
``value``, ``leaf``), ``word_model`` (``vocabulary`` of word features, ``idf``, ``coef``,
``intercept``; required with ``stage2``) and provenance fields. With ``stage2`` the threshold
applies to its output.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from importlib.resources.abc import Traversable
from itertools import pairwise, repeat
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from policies.builtin.normalize import json_strings, views
from policies.native import module as native_module

__all__ = [
    "CHAR_NGRAMS",
    "GCG_FEATURES",
    "HAND_FEATURES",
    "STAGE2_FEATURES",
    "BoostedStage",
    "HashTable",
    "LinearTextModel",
    "ModelFileError",
    "TextModel",
    "WordModel",
    "analyze",
    "char_ngram_hashes",
    "gcg_features",
    "hand_features",
    "linear_best",
    "phrase_counts",
    "score_text",
    "stage2_vector",
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

# Substrings of which a text must hold at least one for the pattern to match (each alternative of
# the pattern contains one): a text with none skips the regular expression (a few ``in`` tests
# instead of a regex pass over the whole text; the counts are the same).
_NEEDS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (
        _OVERRIDE,
        ("ignore", "disregard", "forget", "override", "bypass", "skip", "abandon", "drop", "neglect"),
    ),
    (
        _ROLEPLAY,
        (
            "you are now",
            "you're now",
            "act as",
            "acting as",
            "pretend",
            "role",
            "from now on",
            "character",
            "persona",
            "simulat",
            "developer mode",
            "dan",
            "jailbr",
            "anything now",
            "unfiltered",
            "uncensored",
            "unrestricted",
            "amoral",
            "no ethical",
            "no moral",
            "without",
            "hypothetical",
            "opposite mode",
            "evil",
            "two responses",
            "dual response",
        ),
    ),
    (
        _EXTRACTION,
        (
            "prompt",
            "instructions",
            "configuration",
            "password",
            "secret",
            "system message",
            "your rules",
            "repeat ",
        ),
    ),
    (
        _FORCING,
        (
            "start ",
            "begin ",
            "respond only",
            "answer only",
            "always ",
            "refuse",
            "never ",
            "without",
            "sure, here is",
        ),
    ),
)


def _phrase_counts(low: str) -> list[int]:
    """Matches of ``_OVERRIDE``, ``_ROLEPLAY``, ``_EXTRACTION``, ``_FORCING`` in a lower-cased
    text (``findall``), skipping a pattern when none of its needed substrings is present."""
    return [len(pattern.findall(low)) if any(k in low for k in needs) else 0 for pattern, needs in _NEEDS]


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

_NATIVE = native_module()
"""``policies._native`` (compiled: ``BoostedStage.decision``'s walk), or ``None``: numpy
(``policies.native``). A module global, not a model attribute: models are pickled to workers."""


def char_ngram_hashes(low: str) -> NDArray[np.uint64]:
    """64-bit hashes of the character n-grams (``CHAR_NGRAMS``) of ``" " + low + " "``.

    Polynomial hash over Unicode code points (multiplier 1,000,003, wrapping modulo 2**64, the
    n-gram length mixed in last), computed with numpy for the whole text at once: no per-n-gram
    string is built. Collisions between the ~10**5 n-grams of a model are negligible at 64 bits.
    The hashes of all three lengths come from one running polynomial (the (n+1)-gram's is the
    n-gram's times the multiplier plus the next code point), in the order 3-grams, 4-grams,
    5-grams (the same numbers as hashing every n-gram from its first code point).
    """
    padded = f" {low} "
    cps = np.frombuffer(padded.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint64)
    m = cps.shape[0]
    first = CHAR_NGRAMS[0]
    if m < first:
        return np.zeros(0, dtype=np.uint64)
    sizes = [m - n + 1 for n in CHAR_NGRAMS if m >= n]
    out = np.empty(sum(sizes), dtype=np.uint64)
    raw = cps[: sizes[0]].copy()
    for k in range(1, first):
        raw *= _HASH_MULT
        raw += cps[k : sizes[0] + k]
    out[: sizes[0]] = raw
    start = sizes[0]
    for n, size in zip(CHAR_NGRAMS[1:], sizes[1:], strict=False):
        raw = raw[:size]
        raw *= _HASH_MULT
        raw += cps[n - 1 : n - 1 + size]
        out[start : start + size] = raw
        start += size
    out *= _HASH_MULT
    start = 0
    for n, size in zip(CHAR_NGRAMS, sizes, strict=False):
        out[start : start + size] += np.uint64(n)
        start += size
    return out


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


def _token_stats(text: str) -> tuple[int, int, int, int, int, int, int, int, int]:
    """``(letters, upper, symbols, tokens, noisy, noisy_tail, inner, last_punct, last_len)``: the
    counts behind ``hand_features`` (ASCII letters, capitals and symbols other than ``.,'``; the
    ``str.split()`` tokens; noisy tokens overall and in the last quarter; in the last 20 tokens,
    those with a symbol inside and their symbols; the length of those 20 joined by spaces).
    ``policies._native.hand_token_stats`` computes the same in one pass."""
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
    last_len = sum(len(t) for t in tokens[last_start:]) + count - last_start - 1
    return letters, upper, symbols, count, noisy, noisy_tail, inner, last_punct, last_len


def hand_features(text: str) -> list[float]:
    """Dense features of a normalised ``text``, in ``HAND_FEATURES`` order (all >= 0, mostly < 3).

    Character statistics count ASCII only (``text`` encoded with non-ASCII dropped)."""
    low = text.lower()
    n = len(text)
    stats = _NATIVE.hand_token_stats(text) if _NATIVE is not None else _token_stats(text)
    letters, upper, symbols, count, noisy, noisy_tail, inner, last_punct, last_len = stats
    tail_start = count - count // 4 if count >= 4 else count
    last_n = count - max(0, count - 20)
    one_line = 0.0 if "\n" in text else 1.0
    override, roleplay, extraction, forcing = _phrase_counts(low)
    return [
        math.log1p(override),
        math.log1p(roleplay),
        math.log1p(extraction),
        math.log1p(forcing),
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
    override, roleplay, extraction, forcing = _phrase_counts(text.lower())
    return {"override": override, "roleplay": roleplay, "extraction": extraction, "forcing": forcing}


GCG_FEATURES: tuple[str, ...] = (
    "tail_camel_joins",
    "tail_letter_symbol",
    "tail_symbol_contrast",
    "tail_unbalanced",
    "tail_class_changes",
    "tail_mid_capitals",
)
"""Names of the adversarial-suffix features (``gcg_features``), second stage only."""

STAGE2_FEATURES: tuple[str, ...] = ("linear_logit", *HAND_FEATURES, *GCG_FEATURES, "word_logit")
"""Input columns of the second stage (``stage2_vector``)."""

_TAIL_TOKENS = 25
_CAMEL = re.compile(r"[a-z][A-Z]")
_LETTER_SYMBOL = re.compile(r"[A-Za-z][^A-Za-z0-9\s]|[^A-Za-z0-9\s][A-Za-z]")
_SYMBOL = re.compile(r"[^\w\s.,']")
_NOT_SYMBOL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_ .,'"


def _symbols(joined: str) -> int:
    """``len(_SYMBOL.findall(joined))`` for text joined from ``str.split()`` tokens by single
    spaces: for ASCII text by deleting the allowed bytes (the only whitespace is " "), else by
    the regex."""
    if joined.isascii():
        return len(joined.encode("ascii").translate(None, _NOT_SYMBOL))
    return len(_SYMBOL.findall(joined))


_CLASS_CHANGE = re.compile(r"[A-Za-z](?=[0-9]|[^\w\s])|[0-9](?=[A-Za-z]|[^\w\s])|[^\w\s](?=[A-Za-z0-9])")


def gcg_features(text: str) -> list[float]:
    """Adversarial-suffix features of a normalised ``text``, in ``GCG_FEATURES`` order (all >= 0).

    Computed on the last 25 whitespace tokens (the tail, where GCG-style suffixes sit; Zou et al.
    2023, "Universal and Transferable Adversarial Attacks on Aligned Language Models"): share of
    tokens with a lower-to-upper case join inside (``similarlyNow``), letter/symbol adjacencies
    per character, symbol share of the tail minus that of the head (0 for texts of <= 25 tokens),
    ``ln(1 +`` unbalanced brackets and quotes ``)``, letter/digit/symbol class changes per
    character, and the share of capitalised tokens not after a sentence end. Compiled in
    ``policies._native.gcg_features`` when it is built (the same numbers; this code is the
    reference)."""
    if _NATIVE is not None:
        return list(_NATIVE.gcg_features(text))
    tokens = text.split()
    if not tokens:
        return [0.0] * len(GCG_FEATURES)
    tail = tokens[-_TAIL_TOKENS:]
    tail_s = " ".join(tail)
    head_s = " ".join(tokens[:-_TAIL_TOKENS]) if len(tokens) > _TAIL_TOKENS else ""
    n_tail = max(1, len(tail_s))
    # a join never spans the space between two tokens: none in the joined tail, none in a token
    camel = sum(1 for t in tail if _CAMEL.search(t)) / len(tail) if _CAMEL.search(tail_s) else 0.0
    alternation = len(_LETTER_SYMBOL.findall(tail_s)) / n_tail
    contrast = _symbols(tail_s) / n_tail - _symbols(head_s) / len(head_s) if head_s else 0.0
    unbalanced = (
        sum(abs(tail_s.count(o) - tail_s.count(c)) for o, c in ("()", "[]", "{}")) + tail_s.count('"') % 2
    )
    changes = len(_CLASS_CHANGE.findall(tail_s)) / n_tail
    capitals = sum(1 for a, b in pairwise(tail) if b[:1].isupper() and not a.endswith((".", "!", "?", ":")))
    return [camel, alternation, contrast, math.log1p(unbalanced), changes, capitals / len(tail)]


def stage2_vector(
    logit: float, view_text: str, hand: Sequence[float] | None, word_logit: float
) -> list[float]:
    """The second stage's input (``STAGE2_FEATURES`` order) for the linear ``logit`` of the best
    view, that view's normalised text (``hand``: its ``hand_features`` if already computed, else
    ``None``) and the word-only model's logit on that view (``WordModel.decision``)."""
    return [
        logit,
        *(hand_features(view_text) if hand is None else hand),
        *gcg_features(view_text),
        word_logit,
    ]


class WordModel:
    """Inference for the exported word-only TF-IDF logistic regression (a second-stage input).

    ``decision(text)`` takes a normalised text and returns the logit of scikit-learn's
    ``LogisticRegression`` over ``TfidfTransformer(sublinear_tf=True, norm="l2")`` of the word
    features (``word_features``) kept in ``vocabulary``. Raises ``ModelFileError`` for inconsistent
    arrays."""

    __slots__ = ("_coef_idf", "_idf", "index", "intercept", "size")

    def __init__(self, doc: dict[str, Any]) -> None:
        vocabulary, idf, coef = doc["vocabulary"], doc["idf"], doc["coef"]
        n = len(vocabulary)
        if len(idf) != n or len(coef) != n:
            raise ModelFileError(
                f"inconsistent word model: {n} terms, {len(idf)} idf values, {len(coef)} coefficients"
            )
        if not all(isinstance(t, str) for t in vocabulary) or len(set(vocabulary)) != n:
            raise ModelFileError("inconsistent word model: terms must be distinct word features")
        self.index = {t: i for i, t in enumerate(vocabulary)}
        self._idf = np.zeros(n + 1, dtype=np.float64)  # slot n: terms outside the vocabulary
        self._idf[:n] = np.asarray(idf, dtype=np.float64)
        self._coef_idf = np.zeros(n + 1, dtype=np.float64)
        self._coef_idf[:n] = np.asarray(coef, dtype=np.float64) * self._idf[:n]
        self.intercept = float(doc["intercept"])
        self.size = n

    def decision(self, text: str, words: Sequence[str] | None = None) -> float:
        """The logit (log-odds of attack) of a normalised ``text``; ``words``: its
        ``word_features`` when the caller has them already (saves recomputing them)."""
        if words is None:
            words = word_features(text.lower())
        n = self.size
        cols = np.fromiter(map(self.index.get, words, repeat(n)), dtype=np.intp, count=len(words))
        return self.decision_columns(cols)

    def decision_columns(self, cols: NDArray[np.intp]) -> float:
        """The logit of a text given the columns of its word features (``size`` for a feature
        outside the vocabulary), as ``decision`` computes them."""
        n = self.size
        terms, tf = np.unique(cols[cols < n], return_counts=True)
        if not terms.size:
            return self.intercept
        w = 1.0 + np.log(tf)
        wi = w * self._idf[terms]
        return self.intercept + float(w @ self._coef_idf[terms]) / math.sqrt(float(wi @ wi))


class BoostedStage:
    """Inference for exported gradient-boosted trees (binary log-loss): P(attack) =
    sigmoid(``baseline`` + sum of the leaf values reached, going left when
    ``x[feature] <= threshold``), exactly scikit-learn's ``HistGradientBoostingClassifier``
    ``predict_proba`` for inputs without missing values."""

    __slots__ = (
        "_depth",
        "_feature",
        "_next",
        "_next_flat",
        "_roots",
        "_rows",
        "_span",
        "_threshold",
        "_value",
        "_value_flat",
        "baseline",
        "features",
        "trees",
    )

    def __init__(self, doc: dict[str, Any]) -> None:
        self.features = tuple(str(f) for f in doc["features"])
        if self.features != STAGE2_FEATURES:
            raise ModelFileError(
                f"second stage expects features {list(self.features)}, "
                f"this code computes {list(STAGE2_FEATURES)}"
            )
        self.baseline = float(doc["baseline"])
        trees: list[tuple[list[int], list[float], list[int], list[int], list[float], list[bool]]] = []
        width = len(self.features)
        for t in doc["trees"]:
            tree = (
                [int(v) for v in t["feature"]],
                [float(v) for v in t["threshold"]],
                [int(v) for v in t["left"]],
                [int(v) for v in t["right"]],
                [float(v) for v in t["value"]],
                [bool(v) for v in t["leaf"]],
            )
            size = len(tree[0])
            if size == 0 or any(len(a) != size for a in tree):
                raise ModelFileError("inconsistent second stage: node arrays of different lengths")
            for i in range(size):
                if not tree[5][i] and not (
                    0 <= tree[0][i] < width and i < tree[2][i] < size and i < tree[3][i] < size
                ):
                    raise ModelFileError(f"inconsistent second stage: bad split node {i}")
            trees.append(tree)
        self.trees = tuple(trees)
        self._pack()

    def _pack(self) -> None:
        """Node arrays of all trees padded to one width (trees x nodes), a leaf pointing to itself
        both ways, and the depth of the deepest tree: ``decision`` then walks every tree at once,
        one numpy step per level, instead of node by node in Python (the shipped 200 trees of
        depth 3: 23 instead of 38 microseconds per text, measured with ``time.thread_time_ns``)."""
        width = max(len(t[0]) for t in self.trees)
        count = len(self.trees)
        self._feature = np.zeros((count, width), dtype=np.intp)
        self._threshold = np.zeros((count, width), dtype=np.float64)
        self._next = np.zeros((2, count, width), dtype=np.intp)
        self._value = np.zeros((count, width), dtype=np.float64)
        depth = 0
        for i, (feature, threshold, left, right, value, leaf) in enumerate(self.trees):
            size = len(feature)
            self._value[i, :size] = value
            own = np.arange(size)
            is_leaf = np.asarray(leaf, dtype=bool)
            self._feature[i, :size] = np.where(is_leaf, 0, feature)
            self._threshold[i, :size] = np.where(is_leaf, 0.0, threshold)
            self._next[0, i, :size] = np.where(is_leaf, own, left)
            self._next[1, i, :size] = np.where(is_leaf, own, right)
            depth = max(depth, _tree_depth(left, right, leaf))
        self._rows = np.arange(count)
        self._depth = depth
        # The same arrays flattened (node ``(i, j)`` at ``i * width + j``; ``_next_flat`` holds flat
        # indices, the right child ``_span`` after the left): one 1-D gather per level.
        self._span = count * width
        self._roots = self._rows * width
        self._next_flat = (self._next + self._roots[None, :, None]).reshape(-1)
        self._value_flat = self._value.reshape(-1)

    def decision(self, x: Sequence[float]) -> float:
        """The raw score (log-odds of attack) of one ``STAGE2_FEATURES`` vector (the sum of the
        leaf values reached is taken with numpy: equal to the node-by-node walk up to float
        rounding in the last place). With ``policies._native`` the same walk runs compiled (the
        values summed in tree order: the same to float rounding)."""
        if _NATIVE is not None:
            total = _NATIVE.tree_sum(
                x, self._feature, self._threshold, self._next_flat, self._roots, self._value_flat, self._depth
            )
            return self.baseline + float(total)
        xa = np.asarray(x, dtype=np.float64)
        # every split node's test at once (leaves test feature 0 against 0.0: their answer is
        # never read, a leaf's children are itself), then one gather per level
        right = (xa[self._feature] > self._threshold).reshape(-1).astype(np.intp)
        right *= self._span
        node = self._roots
        for _ in range(self._depth):
            node = self._next_flat[right[node] + node]
        return self.baseline + float(self._value_flat[node].sum())


def _tree_depth(left: Sequence[int], right: Sequence[int], leaf: Sequence[bool]) -> int:
    """Edges on the longest root-to-leaf path of one exported tree (children come after their
    parent, checked by ``BoostedStage``)."""
    depth = [0] * len(leaf)
    for i in range(len(leaf)):
        if not leaf[i]:
            depth[left[i]] = depth[right[i]] = depth[i] + 1
    return max(depth)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class HashTable:
    """Map from 64-bit character n-gram hashes to model columns, looked up for a whole array of
    hashes at once with numpy: each key has a home slot in a power-of-two table at most 1/4 full
    (Fibonacci hashing, Knuth, TAOCP vol. 3, 6.4); a key whose home slot is taken goes to a small
    sorted overflow array. A query costs one gather (and a binary search in the overflow only when
    its home slot holds another key) instead of sorting all queries and a binary search each."""

    __slots__ = ("_cols", "_keys", "_over_cols", "_over_keys", "_shift")

    _MULT = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, keys: Sequence[int], cols: Sequence[int]) -> None:
        bits = max(4, (4 * max(1, len(keys)) - 1).bit_length())
        self._shift = np.uint64(64 - bits)
        self._keys = np.zeros(1 << bits, dtype=np.uint64)
        self._cols = np.full(1 << bits, -1, dtype=np.intp)
        over_keys: list[int] = []
        over_cols: list[int] = []
        slots = self._slots(np.asarray(keys, dtype=np.uint64)).tolist()
        for key, col, slot in zip(keys, cols, slots, strict=True):
            if self._cols[slot] >= 0:
                over_keys.append(key)
                over_cols.append(col)
            else:
                self._keys[slot] = key
                self._cols[slot] = col
        order = np.argsort(np.asarray(over_keys, dtype=np.uint64), kind="stable")
        self._over_keys = np.asarray(over_keys, dtype=np.uint64)[order]
        self._over_cols = np.asarray(over_cols, dtype=np.intp)[order]

    def _slots(self, keys: NDArray[np.uint64]) -> NDArray[np.intp]:
        return ((keys * self._MULT) >> self._shift).astype(np.intp)

    def lookup(self, keys: NDArray[np.uint64]) -> NDArray[np.intp]:
        """The columns of the ``keys`` present in the table (one entry per present key, repeats
        kept, in no particular order)."""
        slots = self._slots(keys)
        cols = self._cols[slots]
        used = cols >= 0
        hit = self._keys[slots] == keys
        hit &= used
        found: NDArray[np.intp] = cols[hit]
        rest = keys[used ^ hit]  # home slot holds another key: try the overflow
        if not (rest.size and self._over_keys.size):
            return found
        pos = np.searchsorted(self._over_keys, rest)
        pos[pos == self._over_keys.size] = 0
        return np.concatenate([found, self._over_cols[pos[self._over_keys[pos] == rest]]])


class ModelFileError(ValueError):
    """The model file is missing, unreadable or inconsistent (raised by ``LinearTextModel.load``)."""


class LinearTextModel:
    """Inference for the exported TF-IDF + hand-feature logistic regression.

    ``score(text)`` takes a normalised text and returns P(attack) in [0, 1]: the same number as
    the training pipeline's ``predict_proba(...)[:, 1]`` (up to float rounding).
    """

    __slots__ = (
        "_char_table",
        "_coef_idf",
        "_hand_coef",
        "_idf",
        "_lin_of",
        "_wm_of",
        "_word_ids",
        "intercept",
        "meta",
        "stage2",
        "threshold",
        "vocab_size",
        "word_model",
    )

    def __init__(
        self,
        vocabulary: Sequence[str | int],
        idf: Sequence[float],
        coef: Sequence[float],
        intercept: float,
        threshold: float,
        meta: dict[str, Any] | None = None,
        stage2: BoostedStage | None = None,
        word_model: WordModel | None = None,
    ) -> None:
        n = len(vocabulary)
        if stage2 is not None and word_model is None:
            raise ModelFileError("inconsistent second stage: it needs the word model (word_logit)")
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
        self._char_table = HashTable(hashes, cols)
        # One look-up per word feature serves both models: word -> id in the union of the two
        # word vocabularies (id len(union): unknown), then id -> column of each model.
        wm_index = word_model.index if word_model is not None else {}
        union = list(words) + [t for t in wm_index if t not in words]
        self._word_ids = {t: i for i, t in enumerate(union)}
        self._lin_of = np.array([*(words.get(t, n) for t in union), n], dtype=np.intp)
        wm_size = word_model.size if word_model is not None else 0
        self._wm_of = np.array([*(wm_index.get(t, wm_size) for t in union), wm_size], dtype=np.intp)
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
        self.stage2 = stage2
        self.word_model = word_model

    @classmethod
    def load(cls, path: Traversable) -> LinearTextModel:
        """Read a model JSON file written by ``gateway.tools.train_injection``: the shipped one
        (``importlib.resources``) or the one a ``prompt_injection`` policy's ``model_path`` names.

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
                meta={
                    k: v
                    for k, v in doc.items()
                    if k not in ("vocabulary", "idf", "coef", "stage2", "word_model")
                },
                stage2=BoostedStage(doc["stage2"]) if doc.get("stage2") is not None else None,
                word_model=WordModel(doc["word_model"]) if doc.get("word_model") is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ModelFileError):
                raise
            raise ModelFileError(f"model file {path} lacks a field: {exc}") from exc

    def _term_counts(self, low: str, ids: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """``(columns, counts)`` of the vocabulary terms present in a lower-cased normalised text
        ``low`` whose word features have the union ids ``ids`` (``word_ids``)."""
        n = self.vocab_size
        cols = self._lin_of[ids]
        char_cols = self._char_table.lookup(char_ngram_hashes(low))
        terms, tf = np.unique(np.concatenate([cols[cols < n], char_cols]), return_counts=True)
        return terms, tf

    def decision(self, text: str) -> float:
        """The logit (log-odds of attack) of a normalised ``text``."""
        return self.decision_and_hand(text)[0]

    def decision_and_hand(self, text: str) -> tuple[float, list[float]]:
        """``(logit, hand features)`` of a normalised ``text`` (the hand features are reused by
        the second stage)."""
        z, hand, _ = self.evaluate(text)
        return z, hand

    def word_ids(self, low: str) -> NDArray[np.intp]:
        """Ids of the ``word_features`` of a lower-cased normalised text in the union of the
        linear and the word model's vocabularies (one dictionary look-up per feature)."""
        words = word_features(low)
        unknown = len(self._lin_of) - 1
        return np.fromiter(map(self._word_ids.get, words, repeat(unknown)), dtype=np.intp, count=len(words))

    def word_logit(self, ids: NDArray[np.intp]) -> float:
        """The word model's logit (``WordModel.decision``) of a text whose ``word_ids`` are
        ``ids``; 0.0 without a word model."""
        if self.word_model is None:
            return 0.0
        return self.word_model.decision_columns(self._wm_of[ids])

    def evaluate(self, text: str) -> tuple[float, list[float], NDArray[np.intp]]:
        """``(logit, hand features, word ids)`` of a normalised ``text``: what the second stage
        reuses (``hand_features``, and the ``word_ids`` for the word model, ``word_logit``)."""
        low = text.lower()
        ids = self.word_ids(low)
        terms, tf = self._term_counts(low, ids)
        z = self.intercept
        if terms.size:
            w = 1.0 + np.log(tf)  # sublinear tf, as TfidfTransformer(sublinear_tf=True)
            wi = w * self._idf[terms]
            norm = math.sqrt(float(wi @ wi))
            if norm > 0.0:
                z += float(w @ self._coef_idf[terms]) / norm
        hand = hand_features(text)
        z += float(self._hand_coef @ np.asarray(hand, dtype=np.float64))
        return z, hand, ids

    def score(self, text: str) -> float:
        """P(attack) in [0, 1] of the *linear* model alone for a normalised ``text``."""
        return _sigmoid(self.decision(text))


class TextModel(Protocol):
    """What ``score_text`` needs of a model: ``LinearTextModel`` or the hashed model
    (``policies.builtin.injection_hashed.HashedTextModel``). The third item of ``evaluate`` (word
    ids or word buckets: an integer array) goes back to the same model's ``word_logit``."""

    @property
    def stage2(self) -> BoostedStage | None: ...

    @property
    def word_model(self) -> object: ...

    def evaluate(self, text: str) -> tuple[float, list[float], NDArray[Any]]: ...

    def word_logit(self, ids: NDArray[Any]) -> float: ...


WINDOW_CHARS = 2_000
"""Texts longer than this are scored in overlapping windows of this many characters (the score
is the window with the highest linear logit), never whole. The model's training texts are short
(``gateway.tools.train_injection.split_examples``, seed 0: 99 % of the benign ones under 2,400
characters, 0.4 % over 4,000; 2.2 % of the attacks over 4,000), and its ``length`` hand feature
(``ln(1 + chars) / 8``, coefficient 11) and the trees fitted on it only ever saw long texts that
were jailbreaks: scored whole, a 10,000-character licence read as one (0.92, against 0.03 for
its first 4,000 characters). A window keeps every input inside the lengths the model was fitted
on, and keeps an injection in a long document from being diluted by the L2 normalisation over
the whole document."""
WINDOW_OVERLAP = 500
"""Characters shared by consecutive windows: an injection of up to this length lies whole in one."""
CHUNK_CHARS = WINDOW_CHARS
"""The former name of ``WINDOW_CHARS``."""
MAX_CHARS = 64_000
"""At most this many characters of one text are scored (bounds the inline cost)."""


_REPEAT_RUN = re.compile(r"(?<!\S)(\S+(?:[ \t]+\S+){0,2}?)(?:[ \t]+\1(?!\S)){3,}")
REPEAT_KEEP = 3
"""Copies of a repeated unit that ``fold_repeats`` keeps."""


def fold_repeats(text: str) -> str:
    """``text`` with every run of four or more copies of one unit of 1-3 whitespace-separated
    tokens on one line (``word word word ...``) cut to ``REPEAT_KEEP`` copies, when at most a
    quarter of its 20 or more tokens are distinct (else ``text`` itself, checked with one
    ``str.split``: the regex runs only on such texts). A repeated unit adds length (the ``length``
    hand feature: long one-line texts were jailbreaks in training) and nothing the model could
    read as content: ``"Summarise: " + "word " * 100`` scored 0.77 (an attack), with three copies
    0.07."""
    tokens = text.split()
    if len(tokens) < 20 or 4 * len(set(tokens)) > len(tokens):
        return text
    return _REPEAT_RUN.sub(" ".join([r"\1"] * REPEAT_KEEP), text)


def windows(text: str) -> list[str]:
    """``text`` itself when it has at most ``WINDOW_CHARS`` characters, else its windows of
    ``WINDOW_CHARS`` characters starting every ``WINDOW_CHARS - WINDOW_OVERLAP`` characters within
    the first ``MAX_CHARS`` (the last one ends at the end of the text or at ``MAX_CHARS``; a window
    shorter than ``WINDOW_OVERLAP`` is never needed: the one before covers it)."""
    n = len(text)
    if n <= WINDOW_CHARS:
        return [text]
    end = min(n, MAX_CHARS)
    step = WINDOW_CHARS - WINDOW_OVERLAP
    starts = [*range(0, end - WINDOW_CHARS, step), end - WINDOW_CHARS]
    return [text[i : i + WINDOW_CHARS] for i in starts]


def linear_best(model: TextModel, text: str) -> tuple[float, str, str, list[float]]:
    """``(logit, view, view_text, hand)``: the linear model's highest logit over the normalised views of
    a raw ``text`` (``policies.builtin.normalize.views``: plain, spaced, base64, hex, rot13), the
    view's name and its normalised text. A JSON object or array is scored on its string values
    (``normalize.json_strings``). Texts over ``WINDOW_CHARS`` are scored in overlapping windows
    (``windows``) up to ``MAX_CHARS``. ``hand`` is the view's ``hand_features``. An empty text gives
    ``(-inf, "plain", "", [])``."""
    z, view, view_text, hand, _ = _linear_best(model, text)
    return z, view, view_text, hand


def _linear_best(model: TextModel, text: str) -> tuple[float, str, str, list[float], NDArray[Any]]:
    """``linear_best`` plus the best view's ``word_ids`` (reused by the word model)."""
    best, best_view, best_text, best_hand = -math.inf, "plain", "", []
    best_words: NDArray[Any] = np.zeros(0, dtype=np.intp)
    values = json_strings(text)
    if values is not None:
        text = values
    for chunk in windows(fold_repeats(text)):
        for name, view in views(chunk):
            if not view:
                continue
            z, hand, words = model.evaluate(view)
            if z > best:
                best, best_view, best_text, best_hand, best_words = z, name, view, hand, words
    return best, best_view, best_text, best_hand, best_words


def score_text(model: TextModel, text: str) -> tuple[float, str]:
    """``(score, view)``: P(attack) in [0, 1] of a raw ``text`` and the name of the view it came
    from. The linear model picks the view with the highest logit (``linear_best``); with a second
    stage the score is the trees' probability for that view (``stage2_vector``), else the linear
    probability. An empty text scores ``(0.0, "plain")``."""
    z, view, view_text, hand, words = _linear_best(model, text)
    if z == -math.inf:
        return 0.0, "plain"
    if model.stage2 is not None and model.word_model is not None:
        x = stage2_vector(z, view_text, hand, model.word_logit(words))
        return _sigmoid(model.stage2.decision(x)), view
    return _sigmoid(z), view
