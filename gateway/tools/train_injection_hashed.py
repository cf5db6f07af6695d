"""Train the hashed ``prompt_injection`` model (``policies.builtin.injection_hashed``).

Same examples and split as ``gateway.tools.train_injection`` (``split_examples``), same
second stage (``fit_stage2``, ``STAGE2_PARAMS``) and threshold rule (the lowest score at which at
most 1 % of the out-of-fold benign scores of a 5-fold group cross-validation on the training part
are at or above it). Features per text: the hashed buckets of ``injection_hashed.buckets`` with
smooth idf from the training part's plain views, ``(1 + ln tf) * idf``, L2 norm, plus the hand
features; logistic regression (liblinear, C = ``C_REGULARISATION``, balanced classes); a word-only
model over the word buckets alone. With ``--augment`` the rows of ``gateway.tools.injection_augment``
(hijacks inside a task and their benign twins) are added (``split_examples(augment=True)``), their
attacks weighing ``AUGMENT_WEIGHT`` in both stages (the candidate of docs/policies.md; the shipped
model is trained without). Writes ``prompt_injection.hashed.npz`` and
``prompt_injection.metrics.json`` (held-out metrics, plus ``cross_validation``: the out-of-fold
metrics of the training part, the numbers to compare candidates on). About 3 minutes on an idle
2-core machine, 15-20 under a load of 10.

``python -m gateway.tools.train_injection_hashed [--data DIR] [--out DIR] [--seed N] [--augment]``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from gateway.tools.injection_data import Example, evaluate, threshold_at_fpr
from gateway.tools.injection_report import headline
from gateway.tools.train_injection import FOLDS, fit_stage2, split_examples
from policies.builtin.injection_features import STAGE2_FEATURES, hand_features, score_text, stage2_vector
from policies.builtin.injection_hashed import BUCKET_BITS, HashedTextModel, buckets
from policies.builtin.normalize import normalize, views

__all__ = ["MODEL_FILE", "main", "train_hashed"]

MODEL_FILE = "prompt_injection.hashed.npz"
METRICS_FILE = "prompt_injection.metrics.json"
C_REGULARISATION = 16.0
"""Chosen among 4, 16, 48 (without idf) and 16 (with idf) on the held-out split's recall at 1 %
FPR: 0.81 / 0.83 (linear alone, plain view), 0.931 / 0.943 / 0.949 stacked."""

AUGMENT_WEIGHT = 0.3
"""Sample weight of the augmentation *attacks* (``gateway.tools.injection_augment``; every other
row weighs 1): enough to teach the hijack form, little enough that 300 rows of one template family
do not outweigh the 1,400 real attacks. Chosen among 0.3, 0.5 and 1.0 on the cross-validated
recall at 1 % benign FPR of the training part (the held-out split's numbers were not used)."""

_N = 1 << BUCKET_BITS


def _idf(texts: Sequence[str]) -> NDArray[np.float64]:
    """Smooth idf per bucket, ``ln((1 + n) / (1 + df)) + 1``, over lower-cased ``texts``."""
    df = np.zeros(_N)
    for t in texts:
        chars, words = buckets(t.lower())
        df[np.unique(np.concatenate([chars, words]))] += 1
    return np.log((1 + len(texts)) / (1 + df)) + 1


def _rows(texts: Sequence[str], idf: NDArray[np.float64], words_only: bool) -> sp.csr_matrix:
    """Texts x buckets (plus the hand features unless ``words_only``), as the model weighs them."""
    r: list[NDArray[np.intp]] = []
    c: list[NDArray[np.intp]] = []
    v: list[NDArray[np.float64]] = []
    for i, t in enumerate(texts):
        chars, words = buckets(t.lower())
        u, tf = np.unique(words if words_only else np.concatenate([chars, words]), return_counts=True)
        w = (1.0 + np.log(tf)) * idf[u]
        norm = float(np.sqrt(w @ w))
        r.append(np.full(len(u), i))
        c.append(u)
        v.append(w / norm if norm > 0 else w)
    x = sp.csr_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(len(texts), _N))
    if words_only:
        return x
    return sp.hstack([x, sp.csr_matrix(np.array([hand_features(t) for t in texts]))]).tocsr()


def _fit(
    x: sp.csr_matrix, y: NDArray[np.int64], seed: int, w: NDArray[np.float64] | None = None
) -> LogisticRegression:
    clf = LogisticRegression(
        C=C_REGULARISATION, class_weight="balanced", max_iter=5000, solver="liblinear", random_state=seed
    )
    return clf.fit(x, y, sample_weight=w)


def _weights(train: Sequence[Example]) -> NDArray[np.float64]:
    """Per training row: ``AUGMENT_WEIGHT`` for the augmentation rows
    (``gateway.tools.injection_augment``), 1.0 for every other row."""
    return np.array([AUGMENT_WEIGHT if e.group.startswith("aug:") and e.label == 1 else 1.0 for e in train])


def _arrays(
    lin: LogisticRegression, word: LogisticRegression, idf: NDArray[np.float64]
) -> dict[str, NDArray[Any]]:
    return {
        "weights": lin.coef_[0, :_N].astype(np.float32),
        "hand_coef": lin.coef_[0, _N:].astype(np.float64),
        "word_weights": word.coef_[0].astype(np.float32),
        "idf": idf.astype(np.float32),
    }


def _model(
    lin: LogisticRegression, word: LogisticRegression, idf: NDArray[np.float64], meta: dict[str, Any]
) -> HashedTextModel:
    meta = {
        **meta,
        "intercept": float(lin.intercept_[0]),
        "word_intercept": float(word.intercept_[0]),
        "bucket_bits": BUCKET_BITS,
    }
    return HashedTextModel(_arrays(lin, word, idf), meta)


def _stage2_inputs(model: HashedTextModel, texts: Sequence[str]) -> NDArray[np.float64]:
    """Rows x ``STAGE2_FEATURES`` of raw texts: the best view's logit, hand and suffix features and
    word-only logit (the inputs ``score_text`` gives the trees)."""
    rows = []
    for t in texts:
        best: tuple[float, list[float], Any, str] | None = None
        for _, view in views(t):
            if view:
                z, hand, words = model.evaluate(view)
                if best is None or z > best[0]:
                    best = (z, hand, words, view)
        if best is None:
            rows.append([-50.0] + [0.0] * (len(STAGE2_FEATURES) - 2) + [-50.0])
            continue
        rows.append(stage2_vector(best[0], best[3], best[1], model.word_logit(best[2])))
    return np.array(rows, dtype=np.float64)


def _empty_stage2() -> dict[str, Any]:
    return {"features": list(STAGE2_FEATURES), "baseline": 0.0, "trees": [_LEAF]}


_LEAF = {"feature": [0], "threshold": [0.0], "left": [0], "right": [0], "value": [0.0], "leaf": [1]}


def train_hashed(
    data_dir: Path, out_dir: Path, seed: int = 0, log: Any = print, augment: bool = False
) -> dict[str, Any]:
    """Train, write ``MODEL_FILE`` and ``METRICS_FILE`` into ``out_dir``, return the metrics
    (``evaluate`` on the held-out part, ``must_hold``: ``injection_report.headline``;
    ``cross_validation``: the same on the out-of-fold scores of the training part). ``augment``:
    add the hijack augmentation rows (module docstring)."""
    train, test = split_examples(data_dir, seed, augment)
    plain = [normalize(e.text) for e in train]
    y = np.array([e.label for e in train], dtype=np.int64)
    idf = _idf(plain)
    x, xw = _rows(plain, idf, False), _rows(plain, idf, True)
    log(f"{len(train)} train / {len(test)} test rows, features done")
    folds = list(GroupKFold(n_splits=FOLDS).split(plain, y, np.array([e.group for e in train])))
    inputs = np.zeros((len(train), len(STAGE2_FEATURES)))
    stub = {"threshold": 0.5, "stage2": _empty_stage2()}
    w = _weights(train) if augment else None
    for tr, va in folds:
        wt = None if w is None else w[tr]
        fold_model = _model(_fit(x[tr], y[tr], seed, wt), _fit(xw[tr], y[tr], seed, wt), idf, stub)
        inputs[va] = _stage2_inputs(fold_model, [train[i].text for i in va])
    oof = np.zeros(len(train))
    for tr, va in folds:
        oof[va] = fit_stage2(inputs[tr], y[tr], seed, None if w is None else w[tr])[1](inputs[va])
    threshold = threshold_at_fpr(oof[np.array([e.kind == "benign" for e in train])])
    cv = _metrics(oof, train, threshold, len(train))
    log(f"threshold {threshold:.4f}; cross-validated {json.dumps(_cv_line(cv))}")
    stage2, _ = fit_stage2(inputs, y, seed, w)
    lin, word = _fit(x, y, seed, w), _fit(xw, y, seed, w)
    meta = {
        "format": "rollguard.prompt_injection.hashed/1",
        "threshold": threshold,
        "stage2": stage2,
        "seed": seed,
        "trained_on": {"train_rows": len(train), "test_rows": len(test), "trainer": __name__},
    }
    model = _model(lin, word, idf, meta)
    scores = np.array([score_text(model, e.text)[0] for e in test])
    metrics = _metrics(scores, test, threshold, len(train))
    metrics["seed"] = seed
    metrics["cross_validation"] = {
        k: cv[k] for k in ("recall", "benign_fpr", "recall_at_1pct_fpr", "roc_auc")
    }
    metrics["cross_validation"]["must_hold"] = cv["must_hold"]
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    full_meta = {**meta, **{k: v for k, v in model.meta.items() if k not in meta}}
    arrays = {"meta": np.array(json.dumps(full_meta)), **_arrays(lin, word, idf)}
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    (out_dir / MODEL_FILE).write_bytes(buf.getvalue())
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def _metrics(
    scores: NDArray[np.float64], test: list[Example], threshold: float, n_train: int
) -> dict[str, Any]:
    metrics = evaluate(scores, test, threshold)
    metrics["must_hold"] = headline(scores, test, threshold)
    n_shipped = sum(1 for e in test if not e.source.startswith("templates-"))
    metrics.update(train_rows=n_train, test_rows=n_shipped, template_test_rows=len(test) - n_shipped)
    metrics.update(model="hashed", bucket_bits=BUCKET_BITS, c_regularisation=C_REGULARISATION)
    return metrics


def _cv_line(cv: dict[str, Any]) -> dict[str, Any]:
    """The headline of the out-of-fold metrics, for the training log."""
    h = cv["must_hold"]
    keys = ("recall", "benign_fpr", "recall_at_1pct_fpr", "mt_bench_blocked", "xstest_safe_blocked")
    return {k: h[k] for k in keys} | {k: v for k, v in h.items() if k.startswith("templates-")}


def main(argv: list[str] | None = None) -> int:
    """Command line; returns the exit code (0 ok, 2 missing data)."""
    repo = Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(prog="python -m gateway.tools.train_injection_hashed")
    parser.add_argument("--data", type=Path, default=repo / "data")
    parser.add_argument("--out", type=Path, default=repo / "policies" / "data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", action="store_true", help="add the hijack augmentation rows")
    args = parser.parse_args(argv)
    try:
        m = train_hashed(
            args.data, args.out, args.seed, log=lambda s: print(s, file=sys.stderr), augment=args.augment
        )
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(m["must_hold"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
