"""The issue-9 headline numbers of the ``prompt_injection`` model on its held-out rows, with 95 %
Wilson intervals (written into ``prompt_injection.metrics.json`` as ``must_hold`` by
``gateway.tools.train_injection``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.tools.eval_guardrails import wilson as _wilson
from gateway.tools.injection_data import Example, threshold_at_fpr

__all__ = ["headline", "wilson"]


def wilson(k: int, n: int) -> list[float]:
    """95 % Wilson score interval of ``k / n``, rounded to 4 places (scipy's ``binomtest``,
    ``gateway.tools.eval_guardrails.wilson``); ``[0, 1]`` when ``n`` is 0."""
    low, high = _wilson(k, n)
    return [round(low, 4), round(high, 4)]


def headline(scores: NDArray[np.float64], test: list[Example], threshold: float) -> dict[str, Any]:
    """The issue-9 must-hold numbers of ``scores`` on ``test``: recall and benign FPR at the
    threshold and recall at the 1 %-FPR oracle point with 95 % intervals, XSTest safe and
    MT-bench blocks (counts), GCG / jailbreak subsets, template families."""
    kinds = np.array([e.kind for e in test])
    src = np.array([e.source for e in test])
    pos, neg = scores[kinds == "attack"], scores[kinds == "benign"]
    oracle = threshold_at_fpr(neg, 0.01)
    k1 = int((pos >= oracle).sum())
    hits = int((pos >= threshold).sum())
    fps = int((neg >= threshold).sum())

    def blocked(name: str) -> list[int]:
        m = src == name
        return [int((scores[m] >= threshold).sum()), int(m.sum())]

    subsets = {e.subset for e in test if e.kind == "attack" and e.subset}
    out: dict[str, Any] = {
        "recall": round(hits / len(pos), 4),
        "recall_95ci": wilson(hits, len(pos)),
        "benign_fpr": round(fps / len(neg), 4),
        "benign_fpr_95ci": wilson(fps, len(neg)),
        "recall_at_1pct_fpr": round(k1 / len(pos), 4),
        "recall_at_1pct_fpr_95ci": wilson(k1, len(pos)),
        "xstest_safe_blocked": blocked("xstest-safe"),
        "mt_bench_blocked": blocked("mt-bench-vicuna-questions"),
        "per_subset_recall": {
            s: round(
                float(
                    (
                        scores[(kinds == "attack") & np.array([e.subset == s for e in test])] >= threshold
                    ).mean()
                ),
                4,
            )
            for s in sorted(subsets)
        },
    }
    for name in sorted({e.source for e in test if e.source.startswith("templates-")}):
        k, n = blocked(name)
        out[name] = [k, n]
    return out
