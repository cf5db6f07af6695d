"""Train and evaluate the ``prompt_injection`` classifier from the shipped data sets.

scikit-learn, numpy, scipy; reads the shipped data sets and writes the model files (a tool, so it
lives outside the pure ``policies`` package). ``train_prompt_injection(data_dir, out_dir, seed)`` writes
``prompt_injection.model.json`` (the exported weights, see ``policies.builtin.injection_features``)
and ``prompt_injection.model.metrics.json`` into ``out_dir`` and returns the metrics (this is the
vocabulary model, version 2; the shipped version 3 is ``gateway.tools.train_injection_hashed``).
``main(argv)`` is the command line (``rollguard train prompt-injection --model vocabulary``).

The examples and their split: ``gateway.tools.injection_data``.

Second stage (stacking): gradient-boosted trees over the linear model's logit on its best view,
that view's hand features, the adversarial-suffix features and the logit of a word-only model
(``fit_word_model``) on that view (``STAGE2_FEATURES``). The trees are fitted on the
*out-of-fold* logits of the training part (so they learn how far to trust a logit the linear
models did not fit themselves), and evaluated by a second 5-fold group cross-validation over
those out-of-fold inputs.

Operating threshold: from that cross-validation on the *training* part only: the lowest score at
which at most ``TARGET_FPR`` of the out-of-fold benign scores are at or above it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from gateway.tools.injection_augment import augment_examples
from gateway.tools.injection_data import (
    Example,
    assign_splits,
    evaluate,
    load_examples,
    markdown_tables,
    threshold_at_fpr,
)
from gateway.tools.injection_report import headline
from gateway.tools.injection_templates import template_examples
from policies.builtin.injection_features import (
    CHAR_NGRAMS,
    HAND_FEATURES,
    STAGE2_FEATURES,
    BoostedStage,
    LinearTextModel,
    WordModel,
    analyze,
    hand_features,
    linear_best,
    score_text,
    stage2_vector,
    word_features,
)
from policies.builtin.normalize import normalize

__all__ = [
    "Example",
    "assign_splits",
    "evaluate",
    "fit_model",
    "fit_stage2",
    "fit_word_model",
    "load_examples",
    "main",
    "markdown_tables",
    "split_examples",
    "stage2_inputs",
    "train_prompt_injection",
]

MODEL_FILE = "prompt_injection.model.json"
METRICS_FILE = "prompt_injection.model.metrics.json"
"""The vocabulary model's metrics (``prompt_injection.metrics.json`` belongs to the shipped hashed
model, ``gateway.tools.train_injection_hashed``)."""
TRAINER = "gateway/tools/train_injection.py"
"""Recorded in the model file's ``trained_on`` (provenance)."""

C_REGULARISATION = 8.0
MIN_DF = 2
MAX_TERMS = 60_000
FOLDS = 5
STAGE2_PARAMS: dict[str, Any] = {
    "max_iter": 200,
    "max_depth": 3,
    "learning_rate": 0.05,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
    "max_features": 0.5,
}
"""Second-stage trees (chosen on the cross-validated operating point among 100x0.1 / 200x0.05 depth 3
and 150x0.05 depth 4, then L2 = 1 with half the features per split: differences were within 0.6
points of recall before the word-only logit, about 0.3-0.4 points with it)."""


# --- fitting ------------------------------------------------------------------------------


def _hand_matrix(texts: Sequence[str]) -> NDArray[np.float64]:
    return np.array([hand_features(t) for t in texts], dtype=np.float64).reshape(
        len(texts), len(HAND_FEATURES)
    )


def _vocabulary(docs: Sequence[Sequence[str | int]], min_df: int) -> list[str | int]:
    """Terms in at least ``min_df`` documents: word features (sorted) then character n-gram
    hashes (sorted), a deterministic column order."""
    df: Counter[str | int] = Counter()
    for d in docs:
        df.update(set(d))
    kept = [t for t, c in df.items() if c >= min_df]
    words = sorted(t for t in kept if isinstance(t, str))
    hashes = sorted(t for t in kept if isinstance(t, int))
    return [*words, *hashes]


def _count_matrix(docs: Sequence[Sequence[str | int]], vocab: Sequence[str | int]) -> sp.csr_matrix:
    """Documents x terms matrix of raw counts (float64), terms outside ``vocab`` dropped."""
    index = {t: i for i, t in enumerate(vocab)}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for r, d in enumerate(docs):
        for term, c in Counter(d).items():
            j = index.get(term)
            if j is not None:
                rows.append(r)
                cols.append(j)
                vals.append(float(c))
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(docs), len(vocab)), dtype=np.float64)


def fit_model(
    texts: Sequence[str], labels: NDArray[np.int64], seed: int = 0, max_terms: int = MAX_TERMS
) -> tuple[dict[str, Any], Callable[[Sequence[str]], NDArray[np.float64]]]:
    """Fit TF-IDF + hand features + logistic regression on normalised ``texts``; prune to the
    ``max_terms`` terms with the largest |coefficient| and refit on them (so the exported model
    is exactly the fitted one).

    Returns the model document (the JSON written to disk, without ``threshold``) and scikit-learn's
    own ``predict_proba(...)[:, 1]`` for normalised texts, to check the export against.
    """
    docs = [analyze(t) for t in texts]
    vocab = _vocabulary(docs, MIN_DF)
    counts = _count_matrix(docs, vocab)
    hand = sp.csr_matrix(_hand_matrix(texts))

    def fit_on(cols: NDArray[np.int64]) -> tuple[LogisticRegression, TfidfTransformer]:
        tfidf = TfidfTransformer(sublinear_tf=True, norm="l2", smooth_idf=True)
        x = sp.hstack([tfidf.fit_transform(counts[:, cols]), hand]).tocsr()
        clf = LogisticRegression(
            C=C_REGULARISATION, class_weight="balanced", max_iter=5000, solver="liblinear", random_state=seed
        )
        clf.fit(x, labels)
        return clf, tfidf

    cols = np.arange(len(vocab))
    clf, tfidf = fit_on(cols)
    if len(vocab) > max_terms:
        weights = np.abs(clf.coef_[0, : len(vocab)])
        cols = np.sort(np.argsort(-weights, kind="stable")[:max_terms])
        clf, tfidf = fit_on(cols)
    kept = [vocab[i] for i in cols]
    doc = {
        "format": "rollguard.prompt_injection.linear/2",
        "vocabulary": kept,
        "idf": [float(v) for v in tfidf.idf_],
        "coef": [float(v) for v in clf.coef_[0]],
        "intercept": float(clf.intercept_[0]),
        "hand_features": list(HAND_FEATURES),
        "char_ngrams": list(CHAR_NGRAMS),
    }

    def sk_predict(new_texts: Sequence[str]) -> NDArray[np.float64]:
        new_counts = _count_matrix([analyze(t) for t in new_texts], kept)
        x = sp.hstack([tfidf.transform(new_counts), sp.csr_matrix(_hand_matrix(new_texts))])
        return np.asarray(clf.predict_proba(x.tocsr())[:, 1], dtype=np.float64)

    return doc, sk_predict


def fit_word_model(
    texts: Sequence[str], labels: NDArray[np.int64], seed: int = 0
) -> tuple[dict[str, Any], Callable[[Sequence[str]], NDArray[np.float64]]]:
    """Fit the word-only model (a second-stage input): TF-IDF (sublinear tf, L2) over the word
    1-2-grams of normalised ``texts`` (``word_features``, terms in at least ``MIN_DF`` texts, no
    character n-grams, no hand features) and logistic regression (liblinear, C =
    ``C_REGULARISATION``, balanced classes).

    Returns the ``word_model`` document of the model file and scikit-learn's own
    ``decision_function`` for normalised texts, to check the export against."""
    docs: list[Sequence[str | int]] = [word_features(t.lower()) for t in texts]
    vocab = _vocabulary(docs, MIN_DF)
    tfidf = TfidfTransformer(sublinear_tf=True, norm="l2", smooth_idf=True)
    x = tfidf.fit_transform(_count_matrix(docs, vocab))
    clf = LogisticRegression(
        C=C_REGULARISATION, class_weight="balanced", max_iter=5000, solver="liblinear", random_state=seed
    )
    clf.fit(x, labels)
    doc = {
        "vocabulary": vocab,
        "idf": [float(v) for v in tfidf.idf_],
        "coef": [float(v) for v in clf.coef_[0]],
        "intercept": float(clf.intercept_[0]),
    }

    def sk_decision(new_texts: Sequence[str]) -> NDArray[np.float64]:
        new = tfidf.transform(_count_matrix([word_features(t.lower()) for t in new_texts], vocab))
        return np.asarray(clf.decision_function(new), dtype=np.float64)

    return doc, sk_decision


def _to_model(doc: dict[str, Any], threshold: float = 0.5) -> LinearTextModel:
    stage2 = BoostedStage(doc["stage2"]) if doc.get("stage2") is not None else None
    word = WordModel(doc["word_model"]) if doc.get("word_model") is not None else None
    return LinearTextModel(
        doc["vocabulary"],
        doc["idf"],
        doc["coef"],
        doc["intercept"],
        threshold,
        stage2=stage2,
        word_model=word,
    )


def stage2_inputs(model: LinearTextModel, texts: Iterable[str]) -> NDArray[np.float64]:
    """Rows x ``STAGE2_FEATURES``: the second stage's input for every raw text, from the linear
    ``model`` (its best view's logit and that view's features) and its ``word_model`` (the
    word-only logit on that view; 0.0 without one).

    Raises nothing for empty texts: their logits are -50."""
    rows = []
    for t in texts:
        z, _, view_text, hand = linear_best(model, t)
        if not math.isfinite(z):
            z, word = -50.0, -50.0
        else:
            word = model.word_model.decision(view_text) if model.word_model is not None else 0.0
        rows.append(stage2_vector(z, view_text, hand if hand else None, word))
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(STAGE2_FEATURES))


def fit_stage2(
    x: NDArray[np.float64],
    labels: NDArray[np.int64],
    seed: int = 0,
    sample_weight: NDArray[np.float64] | None = None,
) -> tuple[dict[str, Any], Callable[[NDArray[np.float64]], NDArray[np.float64]]]:
    """Fit the second stage (``HistGradientBoostingClassifier``, ``STAGE2_PARAMS``, balanced
    classes, non-decreasing in the linear logit, no early stopping: deterministic) on
    ``x`` (rows x ``STAGE2_FEATURES``), rows weighted by ``sample_weight`` (default 1 each).

    Returns the exported trees (the ``stage2`` document of the model file) and scikit-learn's own
    ``predict_proba(...)[:, 1]``, to check the export against."""
    clf = HistGradientBoostingClassifier(
        **STAGE2_PARAMS,
        early_stopping=False,
        class_weight="balanced",
        monotonic_cst=[1] + [0] * (len(STAGE2_FEATURES) - 1),
        random_state=seed,
    )
    clf.fit(x, labels, sample_weight=sample_weight)
    trees = []
    for (predictor,) in clf._predictors:
        nodes = predictor.nodes
        trees.append(
            {
                "feature": [int(v) for v in nodes["feature_idx"]],
                "threshold": [float(v) for v in nodes["num_threshold"]],
                "left": [int(v) for v in nodes["left"]],
                "right": [int(v) for v in nodes["right"]],
                "value": [float(v) for v in nodes["value"]],
                "leaf": [int(v) for v in nodes["is_leaf"]],
            }
        )
    doc = {
        "kind": "gradient_boosted_trees",
        "features": list(STAGE2_FEATURES),
        "baseline": float(np.asarray(clf._baseline_prediction).ravel()[0]),
        "trees": trees,
        "params": dict(STAGE2_PARAMS),
    }

    def sk_predict(new_x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(clf.predict_proba(new_x)[:, 1], dtype=np.float64)

    return doc, sk_predict


def score_all(model: LinearTextModel, texts: Iterable[str]) -> NDArray[np.float64]:
    """The policy's score (max over normalised views) of every raw text."""
    return np.array([score_text(model, t)[0] for t in texts], dtype=np.float64)


# --- the whole run ------------------------------------------------------------------------


def _cross_validate(
    train: Sequence[Example], plain: Sequence[str], seed: int, log: Any
) -> tuple[float, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``(threshold, stage-2 out-of-fold scores, out-of-fold stage-2 inputs, linear out-of-fold
    scores)`` on the training part (group k-fold, twice: linear, then trees on its
    out-of-fold inputs)."""
    labels = np.array([e.label for e in train], dtype=np.int64)
    groups = np.array([e.group for e in train])
    folds = list(GroupKFold(n_splits=FOLDS).split(plain, labels, groups))
    inputs = np.zeros((len(train), len(STAGE2_FEATURES)))
    for k, (tr, va) in enumerate(folds):
        doc, _ = fit_model([plain[i] for i in tr], labels[tr], seed)
        doc["word_model"], _ = fit_word_model([plain[i] for i in tr], labels[tr], seed)
        inputs[va] = stage2_inputs(_to_model(doc), [train[i].text for i in va])
        log(f"linear fold {k + 1}/{FOLDS} done")
    linear = 1.0 / (1.0 + np.exp(-inputs[:, 0]))
    oof = np.zeros(len(train))
    for tr, va in folds:
        _, predict = fit_stage2(inputs[tr], labels[tr], seed)
        oof[va] = predict(inputs[va])
    benign = np.array([e.kind == "benign" for e in train])
    return threshold_at_fpr(oof[benign]), oof, inputs, linear


def split_examples(
    data_dir: Path, seed: int = 0, augment: bool = False
) -> tuple[list[Example], list[Example]]:
    """``(train, test)``: the shipped examples under ``data_dir`` (``load_examples``) plus the
    template rows (``gateway.tools.injection_templates``) and, with ``augment``, the hijack
    augmentation rows (``gateway.tools.injection_augment``), each split by group; the parts are
    split apart, so the shipped rows fall exactly as without the templates. Rows with ``fit=False``
    (operator system prompts) are left out of ``train``. Raises ``FileNotFoundError``."""
    shipped, templates = load_examples(data_dir, seed), template_examples(seed)
    augment_rows = augment_examples(seed) if augment else []
    is_test = (
        assign_splits(shipped, seed) + assign_splits(templates, seed) + assign_splits(augment_rows, seed)
    )
    examples = shipped + templates + augment_rows
    train = [e for e, t in zip(examples, is_test, strict=True) if not t and e.fit]
    test = [e for e, t in zip(examples, is_test, strict=True) if t]
    return train, test


def train_prompt_injection(
    data_dir: Path, out_dir: Path, seed: int = 0, verbose: bool = False
) -> dict[str, Any]:
    """Train on ``split_examples(data_dir, seed)``, write the model and metrics JSON files into
    ``out_dir`` (created if needed) and return the metrics (see ``evaluate``; plus ``must_hold``:
    ``injection_report.headline`` with 95 % intervals; ``before``: the same for the model that was
    in ``out_dir`` before, if any; ``cross_validation`` = the out-of-fold metrics on the training
    part; row counts, ``test_rows`` counting the shipped sources only).

    Takes about 5-10 minutes on 2 cores. Raises ``FileNotFoundError`` for missing data files.
    """
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        if verbose:
            print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr)

    train, test = split_examples(data_dir, seed)
    log(f"{len(train)} train / {len(test)} test examples")
    plain = [normalize(e.text) for e in train]
    threshold, oof, inputs, _ = _cross_validate(train, plain, seed, log)
    cv = evaluate(oof, train, threshold)
    log(f"threshold {threshold:.4f}; cross-validated recall {cv['recall']} fpr {cv['benign_fpr']}")
    labels = np.array([e.label for e in train], dtype=np.int64)
    doc, _ = fit_model(plain, labels, seed)
    doc["word_model"], _ = fit_word_model(plain, labels, seed)
    doc["stage2"], _ = fit_stage2(inputs, labels, seed)
    n_shipped_test = sum(1 for e in test if not e.source.startswith("templates-"))
    doc.update(format="rollguard.prompt_injection.stacked/4", threshold=threshold, seed=seed)
    doc["trained_on"] = {"train_rows": len(train), "test_rows": len(test), "trainer": TRAINER}
    texts = [e.text for e in test]
    scores = score_all(_to_model(doc, threshold), texts)
    metrics = evaluate(scores, test, threshold)
    metrics["must_hold"] = headline(scores, test, threshold)
    if (out_dir / MODEL_FILE).exists():
        old = LinearTextModel.load(out_dir / MODEL_FILE)
        metrics["before"] = headline(score_all(old, texts), test, old.threshold)
    metrics["cross_validation"] = {k: v for k, v in cv.items() if not k.startswith("per_")}
    metrics.update(seed=seed, train_rows=len(train), test_rows=n_shipped_test, terms=len(doc["vocabulary"]))
    metrics["template_test_rows"] = len(test) - n_shipped_test
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_FILE).write_text(
        json.dumps(doc, separators=(",", ":"), ensure_ascii=False), encoding="utf-8"
    )
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    log(f"test: recall {metrics['recall']} fpr {metrics['benign_fpr']} auc {metrics['roc_auc']}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    """``rollguard train prompt-injection [--data DIR] [--out DIR] [--seed N]``: train, write the
    model and metrics, print the headline metrics. Returns the process exit code (0 ok, 2 bad
    arguments or missing data)."""
    repo = Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(
        prog="rollguard train prompt-injection", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", type=Path, default=repo / "data", help="shipped data sets folder")
    parser.add_argument(
        "--out", type=Path, default=repo / "policies" / "data", help="where to write the model"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="also print the metrics as Markdown tables")
    args = parser.parse_args(argv)
    try:
        m = train_prompt_injection(args.data, args.out, args.seed, verbose=not args.quiet)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"threshold {m['threshold']:.4f}  recall {m['recall']:.3f}  benign FPR {m['benign_fpr']:.3f}  "
        f"XSTest-safe FPR {m['xstest_safe_fpr']}  ROC AUC {m['roc_auc']:.4f}  "
        f"recall@1%FPR(test oracle) {m['recall_at_1pct_fpr']:.3f}"
    )
    must = m["must_hold"]
    print(
        f"held-out recall at 1% FPR {must['recall_at_1pct_fpr']:.3f} {must['recall_at_1pct_fpr_95ci']}  "
        f"XSTest safe blocked {must['xstest_safe_blocked']}  MT-bench blocked {must['mt_bench_blocked']}"
    )
    if args.markdown:
        print(markdown_tables(m))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
