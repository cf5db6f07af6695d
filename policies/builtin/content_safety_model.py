"""The exported models behind ``content_safety``: three linear heads over one hashed feature space
(``policies.builtin.content_features``: word 1-2-grams and character 2-5-grams):

- ``request``: P(harmful request), logistic regression;
- ``output``: P(harmful reply: content a model should not have produced), logistic regression;
- ``category``: multinomial logistic regression naming the hazard category (``S1`` .. ``S13``).

Feature weights, per block (words, characters): an occurrence of column ``c`` adds ``idf[c]``; the
block is divided by ``sqrt(sum over occurrences of idf[c] ** 2)`` (TF-IDF with raw counts and an
L2-style norm that needs no de-duplication, so scoring is two gathers and two sums per block; on
the held-out split it scores as well as sublinear TF-IDF: 0.799 vs 0.808 recall at 2 % FPR).
Training: ``gateway/tools/train_content_safety.py`` (scikit-learn ``LogisticRegression`` on the
same vectors, built by ``vectors``).

The model file is a NumPy ``.npz`` archive read with ``allow_pickle=False`` (nothing executable):
``idf`` (``WIDTH``), ``request_coef``, ``output_coef`` (``WIDTH``), ``category_coef``
(categories x ``WIDTH``), ``request_intercept``, ``output_intercept``, ``category_intercept``,
``request_threshold``, ``output_threshold`` (whole replies), ``stream_threshold`` (stream
windows), ``categories`` (codes in row order), ``format``.
"""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from importlib.resources.abc import Traversable

import numpy as np
from numpy.typing import NDArray

from policies.builtin.content_features import BUCKET_BITS, BUCKETS, WIDTH, block_columns, columns, prepared
from policies.native import module as native_module

__all__ = ["FORMAT", "CategoryScore", "ContentModelError", "ContentSafetyModel", "vectors"]

FORMAT = "rollguard-content-safety/2"
_FIELDS = (
    "idf",
    "request_coef",
    "output_coef",
    "category_coef",
    "request_intercept",
    "output_intercept",
    "category_intercept",
    "request_threshold",
    "output_threshold",
    "stream_threshold",
    "categories",
)


class ContentModelError(ValueError):
    """The model file is missing, not an ``.npz`` archive of this format, or lacks a field."""


@dataclass(frozen=True, slots=True)
class CategoryScore:
    """P(harmful) in [0, 1] (request or reply, as asked) and the most likely hazard category code
    (``S1`` .. ``S13``) with its probability among the categories."""

    harmful: float
    category: str
    category_probability: float


def _norms(cols: NDArray[np.int64], idf2: NDArray[np.float64]) -> tuple[float, float]:
    words = cols < BUCKETS
    w = float(np.sum(idf2[cols[words]]))
    c = float(np.sum(idf2[cols[~words]]))
    return (1.0 / math.sqrt(w) if w > 0 else 0.0), (1.0 / math.sqrt(c) if c > 0 else 0.0)


def vectors(texts: list[str], idf: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
    """``(data, indices, indptr)`` of the CSR matrix (rows = ``texts``, ``WIDTH`` columns) the
    models are trained on: each occurrence weighs ``idf[c]`` times its block's norm (see the
    module docstring); duplicates are summed by the consumer (``scipy.sparse.csr_matrix``)."""
    idf2 = idf * idf
    data, ind, ptr = [], [], [0]
    for t in texts:
        cols = columns(t)
        nw, nc = _norms(cols, idf2)
        data.append(idf[cols] * np.where(cols < BUCKETS, nw, nc))
        ind.append(cols)
        ptr.append(ptr[-1] + len(cols))
    return np.concatenate(data), np.concatenate(ind).astype(np.float64), np.asarray(ptr, dtype=np.float64)


_NATIVE = native_module()
"""``policies._native`` (compiled ``block_columns`` + the blocks' table sums), or ``None``: numpy
(``policies.native``). A module global, not a model attribute: models are pickled to workers."""


@dataclass(frozen=True, slots=True)
class _Block:
    """One feature block of a text: its columns (relative to ``at``, the block's first column),
    the sums over them of the table's columns (idf**2, request, output weights), its norm."""

    cols: NDArray[np.int64]
    at: int
    sums: tuple[float, float, float]
    norm: float


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


class ContentSafetyModel:
    """Loaded once (``load``); ``request``, ``output`` and ``category`` are side-effect free and
    thread-safe."""

    def __init__(self, raw: dict[str, NDArray[np.generic]]) -> None:
        try:
            idf = np.asarray(raw["idf"], dtype=np.float64)
            # one row of 32 bytes per column: idf**2, request and output weights (times idf), 0;
            # a text's columns are random, so each costs one cache line instead of one per array
            self._table = np.zeros((len(idf), 4), dtype=np.float64)
            self._table[:, 0] = idf * idf
            self._table[:, 1] = np.asarray(raw["request_coef"], dtype=np.float64) * idf
            self._table[:, 2] = np.asarray(raw["output_coef"], dtype=np.float64) * idf
            # one contiguous row of category weights per column (read with ``take``, as above)
            category_w = np.asarray(raw["category_coef"], dtype=np.float64) * idf
            self._category_t = np.ascontiguousarray(category_w.T)
            self.request_intercept = float(raw["request_intercept"])
            self.output_intercept = float(raw["output_intercept"])
            self.category_intercept = np.asarray(raw["category_intercept"], dtype=np.float64)
            self.request_threshold = float(raw["request_threshold"])
            self.output_threshold = float(raw["output_threshold"])
            self.stream_threshold = float(raw["stream_threshold"])
            self.categories: tuple[str, ...] = tuple(str(c) for c in raw["categories"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ContentModelError(f"content-safety model lacks a field or has a bad one: {exc}") from exc
        if idf.shape != (WIDTH,) or self.request_w.shape != (WIDTH,) or self.output_w.shape != (WIDTH,):
            raise ContentModelError(f"content-safety model: vectors must have {WIDTH} columns")
        if self.category_w.shape != (len(self.categories), WIDTH):
            raise ContentModelError("content-safety model: category_coef does not match the categories")
        self.features = int(np.count_nonzero(idf))

    # Views of the tables, as properties so that pickling the model (the gateway's worker process
    # gets a pickled pipeline) copies each table once, not once more per view.
    @property
    def idf2(self) -> NDArray[np.float64]:
        """IDF squared per column (``WIDTH``)."""
        return self._table[:, 0]

    @property
    def request_w(self) -> NDArray[np.float64]:
        """Request model weights times IDF per column (``WIDTH``)."""
        return self._table[:, 1]

    @property
    def output_w(self) -> NDArray[np.float64]:
        """Output model weights times IDF per column (``WIDTH``)."""
        return self._table[:, 2]

    @property
    def category_w(self) -> NDArray[np.float64]:
        """Category weights times IDF (categories x ``WIDTH``)."""
        return self._category_t.T

    @classmethod
    def load(cls, path: Traversable) -> ContentSafetyModel:
        """Read the ``.npz`` model at ``path``. Raises ``ContentModelError`` for an unreadable
        file or one of another format."""
        try:
            with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ContentModelError(f"cannot read content-safety model {path}: {exc}") from exc
        if str(raw.get("format", "")) != FORMAT:
            raise ContentModelError(f"content-safety model {path} is not {FORMAT}")
        missing = [f for f in _FIELDS if f not in raw]
        if missing:
            raise ContentModelError(f"content-safety model {path} lacks {missing}")
        return cls(raw)

    def _blocks(self, text: str) -> list[_Block]:
        """The feature blocks of ``text`` (words, characters), each with its table rows and norm
        (``1 / sqrt(sum of idf**2)``, 0 for an empty block)."""
        if _NATIVE is not None:
            words, chars, ws, cs = _NATIVE.content_blocks(prepared(text), BUCKET_BITS, self._table)
            pairs = (
                (np.frombuffer(words, dtype=np.int64), 0, ws),
                (np.frombuffer(chars, dtype=np.int64), BUCKETS, cs),
            )
            return [
                _Block(c, at, sums, 1.0 / math.sqrt(sums[0]) if sums[0] > 0 else 0.0) for c, at, sums in pairs
            ]
        out = []
        for cols, at in zip(block_columns(text), (0, BUCKETS), strict=True):
            rows = self._table[at : at + BUCKETS].take(cols, axis=0)  # (n, 4)
            sums = (float(rows[:, 0].sum()), float(rows[:, 1].sum()), float(rows[:, 2].sum()))
            out.append(_Block(cols, at, sums, 1.0 / math.sqrt(sums[0]) if sums[0] > 0 else 0.0))
        return out

    def _harmful(self, blocks: list[_Block], head: int, intercept: float) -> float:
        """``sigmoid(intercept + sum over blocks of norm * sum(weights))``, ``head`` 1 (request)
        or 2 (output). Each block's sums (``np.sum``'s pairwise summation, whatever the stride) add
        the same numbers in the same order as sums over the masked concatenation of both blocks
        did, so the score is the same to the last bit."""
        z = intercept
        for b in blocks:  # words, then characters
            z += b.norm * b.sums[head]
        return _sigmoid(z)

    def _category(self, blocks: list[_Block], harmful: float) -> CategoryScore:
        cols = np.concatenate([b.cols + b.at for b in blocks])
        scale = np.concatenate([np.full(len(b.cols), b.norm) for b in blocks])
        weights = np.ascontiguousarray(self._category_t.take(cols, axis=0).T)  # = category_w[:, cols]
        logits = self.category_intercept + weights @ scale
        logits -= logits.max()
        p = np.exp(logits)
        p /= p.sum()
        k = int(np.argmax(p))
        return CategoryScore(harmful, self.categories[k], float(p[k]))

    def request(self, text: str) -> float:
        """P(``text`` is a harmful request), any length (``content_features.MAX_CHARS``)."""
        return self._harmful(self._blocks(text), 1, self.request_intercept)

    def output(self, text: str) -> float:
        """P(``text``, a model's reply or a piece of one, is harmful content)."""
        return self._harmful(self._blocks(text), 2, self.output_intercept)

    def category(self, text: str, harmful: float = 1.0) -> CategoryScore:
        """The most likely hazard category of ``text`` (request or reply), with ``harmful`` as the
        score to report."""
        return self._category(self._blocks(text), harmful)

    def judge(self, text: str, output: bool, threshold: float) -> tuple[float, str | None]:
        """``(p, category)``: P(harmful) of ``text`` as a reply (``output``) or as a request, and
        when ``p >= threshold`` its most likely category (else None); the same numbers as
        ``output`` / ``request`` then ``category``, with the features computed once."""
        blocks = self._blocks(text)
        if output:
            p = self._harmful(blocks, 2, self.output_intercept)
        else:
            p = self._harmful(blocks, 1, self.request_intercept)
        return p, (self._category(blocks, p).category if p >= threshold else None)
