"""Train and evaluate the ``content_safety`` models from the shipped data sets.

Usage: ``python -m gateway.tools.train_content_safety [--data data] [--out policies/data]
[--seed 0]`` (``bench/train_content_safety.py`` runs the same). Writes ``content_safety.model.npz``
(see ``policies.builtin.content_safety_model``) and ``content_safety.metrics.json``; prints the
metrics. About a minute on one core.

Rows and split: ``gateway.tools.content_data``. Features: ``policies.builtin.content_features``
(hashed word 1-2-grams and character 2-5-grams), weighted by ``content_safety_model.vectors``
with an IDF from the training rows (requests and replies; columns seen in fewer than ``MIN_DF``
training rows get weight 0). Models: scikit-learn ``LogisticRegression`` (class-balanced).
Thresholds: from 5-fold out-of-fold scores on the training part, the lowest score with at most
``TARGET_FPR`` (requests) / ``TARGET_OUTPUT_FPR`` (replies) of benign training rows at or above
it; the held-out rows never choose a threshold. Intervals: 95 % Wilson
(``gateway.tools.eval_guardrails.wilson``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from gateway.tools.content_data import Row, load_rows, reply_rows, reply_split, split
from gateway.tools.content_openers import HELDOUT_OPENERS, TRAIN_OPENERS, opener_copies, prefixed
from gateway.tools.eval_guardrails import wilson
from policies.builtin.content_features import WIDTH, columns
from policies.builtin.content_safety_model import FORMAT, vectors

__all__ = ["evaluate", "main", "stream_windows"]

ROOT = Path(__file__).resolve().parents[2]
TARGET_FPR = 0.018
TARGET_OUTPUT_FPR = 0.01
C_REQUEST = 32.0
C_OUTPUT = 16.0
C_CATEGORY = 4.0
MIN_DF = 2
WINDOW_WEIGHT = 0.3
REQUEST_WEIGHT = 0.5
"""Weight of the training requests among the output model's rows (not evaluated): few harmful
replies are shipped, and those are mostly AdvBench's short "Sure, here is ..." openers, so the
harmful requests teach the topics (without them a pipe-bomb recipe scored 0.27, under the
threshold)."""
OPENER_WEIGHT = 1.0
"""Weight of the opener counterfactual copies (``gateway.tools.content_openers``)."""
WINDOW = 256
"""Characters per stream window in the window-level reply measurement (the stream guard's window:
128 released characters of context + the 128 held back)."""


def _idf(rows: list[Row]) -> NDArray[np.float64]:
    df = np.zeros(WIDTH, dtype=np.int64)
    for r in rows:
        df[np.unique(columns(r.text))] += 1
    n = len(rows)
    return np.where(df >= MIN_DF, np.log((1 + n) / (1 + df)) + 1.0, 0.0)


def _matrix(texts: list[str], idf: NDArray[np.float64]) -> csr_matrix:
    data, ind, ptr = vectors(texts, idf)
    return csr_matrix((data, ind.astype(np.int64), ptr.astype(np.int64)), shape=(len(texts), WIDTH))


def _fit(x: csr_matrix, rows: list[Row], c: float) -> LogisticRegression:
    clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    clf.fit(x, [r.label for r in rows], sample_weight=[r.weight for r in rows])
    return clf


def _oof(x: csr_matrix, rows: list[Row], c: float, seed: int) -> NDArray[np.float64]:
    """Out-of-fold P(harmful) of the training rows: 5 folds, stratified, grouped by ``Row.group``
    (a reply and its stream windows stay in one fold)."""
    y = np.array([r.label for r in rows])
    oof = np.zeros(len(rows))
    folds = StratifiedGroupKFold(5, shuffle=True, random_state=seed)
    for tr, te in folds.split(np.zeros(len(rows)), y, groups=[f"{r.source}:{r.group}" for r in rows]):
        clf = _fit(x[tr], [rows[i] for i in tr], c)
        oof[te] = clf.predict_proba(x[te])[:, 1]
    return oof


def _cut(benign_scores: NDArray[np.float64], target: float) -> float:
    """The lowest threshold with at most ``target`` of ``benign_scores`` at or above it."""
    ranked = np.sort(benign_scores)[::-1]
    return float(ranked[math.floor(target * len(ranked))]) + 1e-6


def _threshold(x: csr_matrix, rows: list[Row], c: float, target: float, seed: int) -> float:
    """The operating threshold from out-of-fold scores of the evaluated benign training rows."""
    oof = _oof(x, rows, c, seed)
    keep = np.array([r.label == 0 and r.evaluated for r in rows])
    return _cut(oof[keep], target)


def _rate(hits: list[bool]) -> dict[str, Any]:
    k, n = sum(hits), len(hits)
    lo, hi = wilson(k, n)
    return {"n": n, "rate": round(k / n, 4) if n else 0.0, "ci95": [round(lo, 4), round(hi, 4)]}


def evaluate(scores: list[float], rows: list[Row], thr: float) -> dict[str, Any]:
    """Recall and benign false-positive rate at ``thr`` (95 % Wilson intervals), per source and
    per hazard category (harmful rows with a source label), recall at 1 % / 2 % benign FPR (oracle
    cut on these rows), ROC AUC."""
    hit = [s >= thr for s in scores]
    pos = [h for h, r in zip(hit, rows, strict=True) if r.label == 1]
    neg = [h for h, r in zip(hit, rows, strict=True) if r.label == 0]
    by_src: dict[str, list[bool]] = defaultdict(list)
    by_cat: dict[str, list[bool]] = defaultdict(list)
    for h, r in zip(hit, rows, strict=True):
        by_src[r.source].append(h)
        if r.label == 1 and r.category:
            by_cat[r.category].append(h)
    neg_scores = sorted((s for s, r in zip(scores, rows, strict=True) if r.label == 0), reverse=True)
    at = {}
    for fpr in (0.01, 0.02):
        cut = neg_scores[int(fpr * len(neg_scores))]
        k = sum(1 for s, r in zip(scores, rows, strict=True) if r.label == 1 and s > cut)
        at[f"recall_at_{round(fpr * 100)}pct_fpr"] = round(k / len(pos), 4)
    recall, fpr_ = _rate(pos), _rate(neg)
    return {
        **at,
        "threshold": round(thr, 6),
        "n_harmful": len(pos),
        "n_benign": len(neg),
        "roc_auc": round(float(roc_auc_score([r.label for r in rows], scores)), 4),
        "recall": recall["rate"],
        "recall_95ci": recall["ci95"],
        "benign_fpr": fpr_["rate"],
        "benign_fpr_95ci": fpr_["ci95"],
        "per_source": {s: _rate(h) for s, h in sorted(by_src.items())},
        "per_category": {c: _rate(h) for c, h in sorted(by_cat.items(), key=lambda kv: int(kv[0][1:]))},
    }


def stream_windows(text: str, size: int = WINDOW) -> list[str]:
    """``text`` cut into the windows a stream check sees: ``size`` characters, every
    ``size // 2`` characters (the last window ends at the text's end)."""
    step = max(size // 2, 1)
    if len(text) <= size:
        return [text]
    starts = [*range(0, len(text) - size, step), len(text) - size]
    return [text[i : i + size] for i in starts]


def _request_part(train: list[Row], test: list[Row], idf: NDArray[np.float64], seed: int) -> dict[str, Any]:
    x = _matrix([r.text for r in train], idf)
    thr = _threshold(x, train, C_REQUEST, TARGET_FPR, seed)  # one-sided: test rows never choose it
    clf = _fit(x, train, C_REQUEST)
    scores = clf.predict_proba(_matrix([r.text for r in test], idf))[:, 1].tolist()
    cat_rows = [r for r in train if r.category]
    cat = LogisticRegression(C=C_CATEGORY, max_iter=3000)
    cat.fit(_matrix([r.text for r in cat_rows], idf), [r.category for r in cat_rows])
    test_cat = [r for r in test if r.category]
    pred = cat.predict(_matrix([r.text for r in test_cat], idf))
    metrics = evaluate(scores, test, thr)
    metrics["category_accuracy"] = round(float(np.mean(pred == np.array([r.category for r in test_cat]))), 4)
    metrics["n_category_test"] = len(test_cat)
    metrics["category_counts_train"] = dict(Counter(r.category for r in cat_rows))
    return {"metrics": metrics, "clf": clf, "cat": cat, "threshold": thr}


def _with_windows(rows: list[Row]) -> tuple[list[Row], list[int]]:
    """``rows`` followed by the stream windows of each row longer than ``WINDOW`` (same label and
    group, weight ``WINDOW_WEIGHT``, not evaluated); and for every returned row the index of the
    reply it comes from."""
    out, owner = list(rows), list(range(len(rows)))
    for i, r in enumerate(rows):
        if len(r.text) > WINDOW:
            for w in stream_windows(r.text):
                out.append(Row(w, r.label, r.source, r.group, r.category, WINDOW_WEIGHT, False))
                owner.append(i)
    return out, owner


def _opener_check(
    clf: LogisticRegression, test: list[Row], idf: NDArray[np.float64], thr: float, seed: int
) -> dict[str, Any]:
    """Held-out benign replies given a compliance opener: the share flagged at ``thr`` (``rate``)
    and the share flagged only because of the opener (``opener_induced``: flagged with it, not
    without it), with an opener from ``TRAIN_OPENERS`` and from ``HELDOUT_OPENERS`` (never
    trained on), each on the whole reply and on its first sentence (up to 120 characters: the
    short replies an opener dominates)."""
    rng = random.Random(seed + 1)
    benign = [r.text for r in test if r.label == 0]
    out: dict[str, Any] = {}
    for part, texts in (("whole", benign), ("first_sentence", [_first_sentence(t) for t in benign])):
        bare = clf.predict_proba(_matrix(texts, idf))[:, 1] >= thr
        out[f"no_opener_{part}"] = _rate(bare.tolist())
        for name, openers in (("train_openers", TRAIN_OPENERS), ("heldout_openers", HELDOUT_OPENERS)):
            led = (
                clf.predict_proba(_matrix([prefixed(rng.choice(openers), t) for t in texts], idf))[:, 1]
                >= thr
            )
            out[f"{name}_{part}"] = {**_rate(led.tolist()), "opener_induced": _rate((led & ~bare).tolist())}
    return out


def _first_sentence(text: str) -> str:
    """``text`` up to its first sentence end or 120 characters (cut at a word)."""
    head = re.split(r"(?<=[.!?:])\s", text.strip(), maxsplit=1)[0]
    return head if len(head) <= 120 else head[:120].rsplit(" ", 1)[0]


def _output_part(
    train: list[Row], test: list[Row], idf: NDArray[np.float64], seed: int, copies: list[Row]
) -> dict[str, Any]:
    """The reply model, trained on whole replies and their stream windows, plus ``copies`` (the
    opener counterfactuals, whole texts only). Two thresholds from out-of-fold scores:
    ``threshold`` for whole replies (``post_call``) and ``stream_threshold`` for windows, set so
    that at most ``TARGET_OUTPUT_FPR`` of benign training replies would have any window at or
    above it."""
    rows, owner = _with_windows(train)
    rows += copies
    owner += [-1] * len(copies)
    x = _matrix([r.text for r in rows], idf)
    oof = _oof(x, rows, C_OUTPUT, seed)
    benign = [i for i, r in enumerate(train) if r.label == 0 and r.evaluated]
    thr = _cut(oof[benign], TARGET_OUTPUT_FPR)
    worst = np.zeros(len(train))
    for j, i in enumerate(owner):
        if i < 0:
            continue
        if rows[j].text is not train[i].text or len(train[i].text) <= WINDOW:
            worst[i] = max(worst[i], oof[j])
    stream_thr = _cut(worst[benign], TARGET_OUTPUT_FPR)
    clf = _fit(x, rows, C_OUTPUT)
    scores = clf.predict_proba(_matrix([r.text for r in test], idf))[:, 1].tolist()
    metrics = evaluate(scores, test, thr)
    flagged: dict[int, list[bool]] = {0: [], 1: []}
    for r in test:  # a stream flags a reply when any of its windows reaches the stream threshold
        p = clf.predict_proba(_matrix(stream_windows(r.text), idf))[:, 1]
        flagged[r.label].append(bool((p >= stream_thr).any()))
    metrics["stream_threshold"] = round(stream_thr, 6)
    metrics["stream_recall"] = _rate(flagged[1])
    metrics["stream_benign_fpr"] = _rate(flagged[0])
    metrics["benign_with_opener"] = _opener_check(clf, test, idf, thr, seed)
    return {"metrics": metrics, "clf": clf, "threshold": thr, "stream_threshold": stream_thr}


def _export(out: Path, idf: NDArray[np.float64], req: dict[str, Any], outp: dict[str, Any]) -> None:
    cat: LogisticRegression = req["cat"]
    np.savez_compressed(
        out / "content_safety.model.npz",
        format=np.asarray(FORMAT),
        idf=idf.astype(np.float32),
        request_coef=req["clf"].coef_[0].astype(np.float32),
        output_coef=outp["clf"].coef_[0].astype(np.float32),
        category_coef=cat.coef_.astype(np.float16),
        request_intercept=np.asarray(req["clf"].intercept_[0]),
        output_intercept=np.asarray(outp["clf"].intercept_[0]),
        category_intercept=cat.intercept_.astype(np.float64),
        request_threshold=np.asarray(req["threshold"]),
        output_threshold=np.asarray(outp["threshold"]),
        stream_threshold=np.asarray(outp["stream_threshold"]),
        categories=np.asarray([str(c) for c in cat.classes_]),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "policies" / "data")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = load_rows(args.data, args.seed)
    train, test = split(rows, args.seed)
    r_train, r_test = reply_split(reply_rows(args.data), test)
    idf = _idf(train + r_train)
    req = _request_part(train, test, idf, args.seed)
    topics = [Row(r.text, r.label, r.source, r.group, r.category, REQUEST_WEIGHT, False) for r in train]
    copies = opener_copies(r_train, args.seed, OPENER_WEIGHT)
    outp = _output_part(r_train + topics, r_test, idf, args.seed, copies)
    metrics = {
        **req["metrics"],
        "output": outp["metrics"],
        "seed": args.seed,
        "train_rows": len(train),
        "test_rows": len(test),
        "reply_train_rows": len(r_train),
        "reply_opener_copies": len(copies),
        "reply_test_rows": len(r_test),
        "features": int(np.count_nonzero(idf)),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    _export(args.out, idf, req, outp)
    (args.out / "content_safety.metrics.json").write_text(
        json.dumps(metrics, indent=2) + "\n", encoding="utf-8"
    )
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
