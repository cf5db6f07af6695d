"""Agreement and aggregation of reviewer verdicts. Pure functions (numpy, scikit-learn,
``krippendorff``); no I/O.

- Cohen's kappa per reviewer pair on the items both judged: ``sklearn.metrics.cohen_kappa_score``
  (Cohen 1960).
- Krippendorff's alpha per queue (nominal level) and per label (one-vs-rest, binary), with the
  ``krippendorff`` package (Castro 2017; Krippendorff 2011). Alpha below 0.667 is the customary
  floor for tentative conclusions (Krippendorff 2004, *Content Analysis*, 2nd ed., p. 241).
- Dawid-Skene aggregation (Dawid & Skene 1979, *Applied Statistics* 28(1):20-28): one confusion
  matrix per reviewer, class priors, EM from the majority vote. A small implementation is kept
  here because the maintained package (crowd-kit) pulls transformers and nltk into a gateway
  (docs/decisions.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import krippendorff
import numpy as np
from sklearn.metrics import cohen_kappa_score

Votes = Mapping[str, Mapping[str, str]]
"""item id -> reviewer -> label."""


@dataclass(frozen=True, slots=True)
class PairKappa:
    """Cohen's kappa of two reviewers on ``n`` shared items (None when undefined: fewer than two
    shared items or a single label used by both)."""

    a: str
    b: str
    n: int
    kappa: float | None


def pair_kappas(votes: Votes, min_items: int = 2) -> list[PairKappa]:
    """Cohen's kappa for every reviewer pair with at least ``min_items`` shared items."""
    by_reviewer: dict[str, dict[str, str]] = {}
    for item, rv in votes.items():
        for r, label in rv.items():
            by_reviewer.setdefault(r, {})[item] = label
    out: list[PairKappa] = []
    for a, b in combinations(sorted(by_reviewer), 2):
        shared = sorted(set(by_reviewer[a]) & set(by_reviewer[b]))
        if len(shared) < min_items:
            continue
        ya = [by_reviewer[a][i] for i in shared]
        yb = [by_reviewer[b][i] for i in shared]
        k: float | None = None
        if len(set(ya) | set(yb)) > 1:
            val = float(cohen_kappa_score(ya, yb))
            k = None if math.isnan(val) else round(val, 4)
        out.append(PairKappa(a, b, len(shared), k))
    return out


def _reliability(votes: Votes, labels: Sequence[str]) -> np.ndarray:
    reviewers = sorted({r for rv in votes.values() for r in rv})
    items = sorted(votes)
    index = {lab: i for i, lab in enumerate(labels)}
    data = np.full((len(reviewers), len(items)), np.nan)
    for j, item in enumerate(items):
        for r, lab in votes[item].items():
            data[reviewers.index(r), j] = index[lab]
    return data


def krippendorff_alpha(votes: Votes) -> float | None:
    """Nominal Krippendorff's alpha over all items with at least two verdicts; None when
    undefined (no such item, or only one label value in the data)."""
    pairable = {i: rv for i, rv in votes.items() if len(rv) >= 2}
    labels = sorted({lab for rv in pairable.values() for lab in rv.values()})
    if not pairable or len(labels) < 2:
        return None
    data = _reliability(pairable, labels)
    val = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    return None if math.isnan(val) else round(val, 4)


def alpha_per_label(votes: Votes) -> dict[str, float | None]:
    """Binary (label vs. any other) alpha for each label seen."""
    labels = sorted({lab for rv in votes.values() for lab in rv.values()})
    out: dict[str, float | None] = {}
    for lab in labels:
        binary = {i: {r: ("yes" if v == lab else "no") for r, v in rv.items()} for i, rv in votes.items()}
        out[lab] = krippendorff_alpha(binary)
    return out


@dataclass(frozen=True, slots=True)
class Aggregate:
    """Posterior label of one item: ``label`` (arg max), ``posterior`` its probability,
    ``distribution`` label -> probability."""

    item: str
    label: str
    posterior: float
    distribution: dict[str, float]


def dawid_skene(
    votes: Votes, *, max_iter: int = 50, tol: float = 1e-6, smoothing: float = 0.01
) -> dict[str, Aggregate]:
    """Dawid-Skene EM posterior per item.

    ``smoothing`` is an additive (Laplace) count on every confusion-matrix cell so that reviewers
    with few items do not get degenerate 0/1 rates. Initialised from per-item vote shares (the
    soft majority vote); stops when the largest change of a posterior is below ``tol`` or after
    ``max_iter`` rounds. Only items where reviewers overlap (at least two verdicts) are aggregated:
    an item with one verdict is left out and its label is that verdict (callers fall back to it),
    since EM would otherwise replace every minority label of a k=1 queue by the majority class.
    """
    items = sorted(i for i, rv in votes.items() if len(rv) >= 2)
    if not items:
        return {}
    labels = sorted({lab for i in items for lab in votes[i].values()})
    reviewers = sorted({r for i in items for r in votes[i]})
    li = {lab: n for n, lab in enumerate(labels)}
    ri = {r: n for n, r in enumerate(reviewers)}
    n_items, n_labels, n_rev = len(items), len(labels), len(reviewers)
    # counts[i, r, l] = 1 when reviewer r gave label l on item i
    counts = np.zeros((n_items, n_rev, n_labels))
    for a, item in enumerate(items):
        for r, lab in votes[item].items():
            counts[a, ri[r], li[lab]] = 1.0
    t = counts.sum(axis=1)
    t = t / t.sum(axis=1, keepdims=True)
    for _ in range(max_iter):
        priors = (t.sum(axis=0) + smoothing) / (n_items + smoothing * n_labels)
        # confusion[r, true, given]
        conf = np.einsum("it,irg->rtg", t, counts) + smoothing
        conf = conf / conf.sum(axis=2, keepdims=True)
        log_t = np.log(priors)[None, :] + np.einsum("irg,rtg->it", counts, np.log(conf))
        log_t -= log_t.max(axis=1, keepdims=True)
        new_t = np.exp(log_t)
        new_t /= new_t.sum(axis=1, keepdims=True)
        delta = float(np.abs(new_t - t).max())
        t = new_t
        if delta < tol:
            break
    out: dict[str, Aggregate] = {}
    for a, item in enumerate(items):
        best = int(np.argmax(t[a]))
        dist = {lab: round(float(t[a, li[lab]]), 4) for lab in labels}
        out[item] = Aggregate(item, labels[best], float(t[a, best]), dist)
    return out


@dataclass(frozen=True, slots=True)
class Precision:
    """Reviewer-confirmed precision of one detector or policy: ``confirmed / judged`` among its
    decided items (None when nothing was judged)."""

    detector: str
    judged: int
    confirmed: int

    @property
    def precision(self) -> float | None:
        return round(self.confirmed / self.judged, 4) if self.judged else None


def detector_precision(items: Sequence[tuple[Sequence[str], bool]]) -> dict[str, Precision]:
    """Per detector: ``items`` are (detectors that raised the item, whether the final verdict
    confirms the alert)."""
    judged: dict[str, int] = {}
    confirmed: dict[str, int] = {}
    for detectors, ok in items:
        for d in detectors:
            judged[d] = judged.get(d, 0) + 1
            confirmed[d] = confirmed.get(d, 0) + int(ok)
    return {d: Precision(d, judged[d], confirmed[d]) for d in sorted(judged)}
