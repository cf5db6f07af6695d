"""Rebuild the shipped detector models from the shipped data sets and write their model card.

    python bench/train_detectors.py            # writes detectors/data/*.npz and model_card.json

Refusal head: XSTest v2 completions (5 models, human labels; refusal = full or partial) plus the
hand-written hard cases in detectors/data/refusal_augment.jsonl. Its quality is measured by 5-fold
cross-validation grouped by XSTest prompt (no prompt on both sides), with the decision threshold
chosen by an inner grouped CV on each training fold; the augment rows are only ever in training.
The plain baseline (TF-IDF word 1-2-grams of the reply, scikit-learn defaults, threshold 0.5) is
measured the same way.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_score, recall_score
from sklearn.model_selection import GroupKFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors import reference_model, refusal_model
from gateway.tools import shipped

OUT = Path(__file__).resolve().parents[1] / "detectors" / "data"
SENTENCE_THRESHOLD = 0.85
THRESHOLDS = np.round(np.arange(0.2, 0.75, 0.05), 2)


def _is_refusal(label: str) -> int:
    return 0 if label.startswith("1") else 1


def _fit_predict(train: list[shipped.Exchange], test_texts: list[str]) -> np.ndarray:
    y = np.array([_is_refusal(e.label) for e in train])
    head, _ = refusal_model.fit_head(refusal_model.reply_blocks([e.reply for e in train]), y)
    return head.proba(refusal_model.reply_blocks(test_texts))


def _fit_sentence(train: list[shipped.Exchange]) -> refusal_model.LinearHead:
    xs, ys = refusal_model.sentence_training_rows([e.reply for e in train], [e.label for e in train])
    head, _ = refusal_model.fit_head([_sent_counts(xs)], ys, c=10.0)
    return head


def _sent_counts(sents: list[str]) -> Any:
    return refusal_model.reply_blocks(sents)[0]


def _sentence_max(head: refusal_model.LinearHead, texts: list[str]) -> np.ndarray:
    out = np.zeros(len(texts))
    for i, t in enumerate(texts):
        sents = [s[2] for s in refusal_model.opening_sentences(t)] or [""]
        out[i] = head.proba([_sent_counts(sents)]).max()
    return out


def _inner_threshold(train: list[shipped.Exchange]) -> float:
    xs = [e for e in train if e.source != "augment"]
    aug = [e for e in train if e.source == "augment"]
    y = np.array([_is_refusal(e.label) for e in xs])
    groups = np.array([e.group for e in xs])
    pred = np.zeros(len(xs))
    for tr, te in GroupKFold(4).split(xs, y, groups):
        pred[te] = _fit_predict([xs[i] for i in tr] + aug, [xs[i].reply for i in te])
    scores = [f1_score(y, pred >= t) for t in THRESHOLDS]
    return float(THRESHOLDS[int(np.argmax(scores))])


def evaluate_refusal(xs: list[shipped.Exchange], aug: list[shipped.Exchange]) -> dict[str, object]:
    """Grouped 5-fold CV of the shipped recipe and of the plain baseline."""
    y = np.array([_is_refusal(e.label) for e in xs])
    groups = np.array([e.group for e in xs])
    pred = np.zeros(len(xs))
    whole_only = np.zeros(len(xs), dtype=bool)
    flagged = np.zeros(len(xs), dtype=bool)
    base = np.zeros(len(xs))
    thresholds = []
    for tr, te in GroupKFold(5).split(xs, y, groups):
        train = [xs[i] for i in tr] + aug
        t = _inner_threshold(train)
        thresholds.append(t)
        texts = [xs[i].reply for i in te]
        pred[te] = _fit_predict(train, texts)
        whole_only[te] = pred[te] >= t
        flagged[te] = whole_only[te] | (_sentence_max(_fit_sentence(train), texts) >= SENTENCE_THRESHOLD)
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        lr = LogisticRegression(max_iter=3000).fit(vec.fit_transform([xs[i].reply for i in tr]), y[tr])
        base[te] = lr.predict_proba(vec.transform([xs[i].reply for i in te]))[:, 1]
    labels = np.array([e.label for e in xs])
    per_model = {}
    for m in shipped.XSTEST_MODELS:
        sel = np.array([e.source == f"xstest/{m}" for e in xs])
        per_model[m] = round(float(f1_score(y[sel], flagged[sel])), 4)
    return {
        "n": len(xs),
        "cv": "5-fold GroupKFold by XSTest prompt id; threshold by inner 4-fold grouped CV",
        "f1": round(float(f1_score(y, flagged)), 4),
        "precision": round(float(precision_score(y, flagged)), 4),
        "recall": round(float(recall_score(y, flagged)), 4),
        "recall_full_refusal": round(float(flagged[labels == "2_full_refusal"].mean()), 4),
        "recall_partial_refusal": round(float(flagged[labels == "3_partial_refusal"].mean()), 4),
        "false_positive_rate_compliance": round(float(flagged[labels == "1_full_compliance"].mean()), 4),
        "f1_whole_reply_head_only": round(float(f1_score(y, whole_only)), 4),
        "sentence_threshold": SENTENCE_THRESHOLD,
        "fold_thresholds": thresholds,
        "f1_per_model": per_model,
        "baseline_tfidf_lr_f1": round(float(f1_score(y, base >= 0.5)), 4),
    }


def main() -> int:
    t0 = time.time()
    xs = shipped.xstest_completions()
    aug = shipped.refusal_augment()
    card: dict[str, object] = {"refusal_cv": evaluate_refusal(xs, aug)}
    print(json.dumps(card["refusal_cv"], indent=1))

    train = xs + aug
    y = np.array([_is_refusal(e.label) for e in train])
    refusal, _ = refusal_model.fit_head(refusal_model.reply_blocks([e.reply for e in train]), y)
    threshold = _inner_threshold(train)
    refusers = [e for e in train if _is_refusal(e.label)]
    yp = np.array([1 if e.label.startswith("3") else 0 for e in refusers])
    partial, _ = refusal_model.fit_head(refusal_model.reply_blocks([e.reply for e in refusers]), yp, c=3.0)

    benign = shipped.benign_prompts() + [
        p["prompt"] for p in shipped.xstest_prompts() if p["label"] == "safe"
    ]
    harmful = shipped.harmful_prompts() + [
        p["prompt"] for p in shipped.xstest_prompts() if p["label"] == "unsafe"
    ]
    ys = np.array([1] * len(benign) + [0] * len(harmful))
    safe, _ = refusal_model.fit_head(refusal_model.prompt_blocks(benign + harmful), ys, c=10.0)
    sentence = _fit_sentence(train)
    heads = {"refusal": refusal, "partial": partial, "sentence": sentence, "safe_prompt": safe}
    arrays = refusal_model.model_arrays(heads, threshold, SENTENCE_THRESHOLD)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "refusal_model.npz", **arrays)  # type: ignore[arg-type]

    ref = (
        [e for e in shipped.arena_answers() if e.source in ("arena/gpt-4-0314", "arena/gpt-4-0613")]
        + [e for e in shipped.oasst_outputs() if e.source in ("oasst/gpt-4", "oasst/claude-v1.3")]
        + shipped.hh_exchanges(side="chosen")
        + [e for e in xs if e.source == "xstest/gpt4" and e.label.startswith("1")]
    )
    arrays = reference_model.train([e.prompt for e in ref], [e.reply for e in ref])
    np.savez_compressed(OUT / "reference_model.npz", **arrays)  # type: ignore[arg-type]
    card["refusal_threshold"] = threshold
    card["refusal_training_rows"] = {"xstest": len(xs), "augment": len(aug)}
    card["safe_prompt_training_rows"] = {"benign": len(benign), "harmful": len(harmful)}
    card["reference_rows"] = len(ref)
    card["reference_cluster_sizes"] = [int(v) for v in arrays["len_n"]]
    card["seconds"] = round(time.time() - t0, 1)
    (OUT / "model_card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(card, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
