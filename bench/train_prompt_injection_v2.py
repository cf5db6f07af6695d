"""Train the ``prompt_injection`` model, version 2 (issue 9 item 4): the stacked model of the
original trainer (TF-IDF word + character n-grams and hand features, logistic regression, then
gradient-boosted trees; ``gateway.tools.train_injection``, whose fitting and evaluation
functions this script reuses) trained on the shipped data PLUS the template rows of
``bench/injection_templates.py``: instruction overrides in French, German, Spanish and leetspeak
(attacks), role / style requests and ordinary requests in those languages (hard negatives).

Usage: ``PYTHONPATH=. python bench/train_prompt_injection_v2.py [--out policies/data] [--seed 0]``.
Writes ``prompt_injection.model.json`` and ``prompt_injection.metrics.json`` (the latter adds
``before``: the previously shipped model scored on the same test rows, and 95 % Wilson intervals).

Template rows are split by template (``group``), 30 % of the templates per family held out like
every source; their test rows are reported per source (``templates-*``) and are NOT part of the
headline recall / benign false-positive rate, which stay on the shipped sources only.

Note for the lead: the original trainer is being moved out of ``policies/`` (issue 7); only the
``import ... as v1`` line below needs to follow it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from injection_templates import attack_rows, benign_rows

from gateway.tools import train_injection as v1
from policies.builtin.injection_features import LinearTextModel
from policies.builtin.normalize import normalize

ROOT = Path(__file__).resolve().parents[1]


def template_examples(seed: int = 0) -> list[v1.Example]:
    """The template rows as training examples (kinds ``synthetic_attack`` / ``synthetic_benign``:
    trained on, reported per source, never in the headline rates)."""
    out = []
    for text, _label, group in attack_rows(seed):
        lang = group.split(":")[0]
        out.append(v1.Example(text, 1, f"templates-override-{lang}", f"tpl:{group}", "synthetic_attack"))
    for text, label, group in benign_rows(seed):
        fam = group.split(":")[0]
        out.append(v1.Example(text, label, f"templates-benign-{fam}", f"tpl:{group}", "synthetic_benign"))
    return out


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of ``k / n`` (Wilson 1927)."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(max(0.0, c - h), 4), round(min(1.0, c + h), 4)]


def headline(scores: np.ndarray, test: list[v1.Example], threshold: float) -> dict[str, Any]:
    """The issue-9 must-hold numbers of ``scores`` on ``test``: recall and benign FPR at the
    threshold and recall at the 1 %-FPR oracle point with 95 % intervals, XSTest safe and
    MT-bench blocks (counts), GCG / jailbreak subsets, template families."""
    kinds = np.array([e.kind for e in test])
    src = np.array([e.source for e in test])
    pos, neg = scores[kinds == "attack"], scores[kinds == "benign"]
    oracle = v1.threshold_at_fpr(neg, 0.01)
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


def train(out_dir: Path, seed: int, log: Any) -> dict[str, Any]:
    """Fit and evaluate (see the module docstring); write the model and metrics into ``out_dir``."""
    shipped, templates = v1.load_examples(ROOT / "data", seed), template_examples(seed)
    # split apart, so the shipped rows fall exactly as in the original trainer (before/after comparable)
    is_test = v1.assign_splits(shipped, seed) + v1.assign_splits(templates, seed)
    examples = shipped + templates
    train_rows = [e for e, t in zip(examples, is_test, strict=True) if not t and e.fit]
    test = [e for e, t in zip(examples, is_test, strict=True) if t]
    log(f"{len(train_rows)} train / {len(test)} test")
    plain = [normalize(e.text) for e in train_rows]
    threshold, oof, inputs, _ = v1._cross_validate(train_rows, plain, seed, log)
    cv = v1.evaluate(oof, train_rows, threshold)
    labels = np.array([e.label for e in train_rows], dtype=np.int64)
    doc, _ = v1.fit_model(plain, labels, seed)
    doc["word_model"], _ = v1.fit_word_model(plain, labels, seed)
    doc["stage2"], _ = v1.fit_stage2(inputs, labels, seed)
    doc.update(format="rollguard.prompt_injection.stacked/4", threshold=threshold, seed=seed)
    doc["trained_on"] = {
        "train_rows": len(train_rows),
        "test_rows": len(test),
        "trainer": "bench/train_prompt_injection_v2.py",
    }
    model = v1._to_model(doc, threshold)
    texts = [e.text for e in test]
    scores = v1.score_all(model, texts)
    metrics = v1.evaluate(scores, test, threshold)
    metrics["must_hold"] = headline(scores, test, threshold)
    old_path = out_dir / v1.MODEL_FILE
    if old_path.exists():
        old = LinearTextModel.load(old_path)
        if "trainer" not in json.loads(old_path.read_text(encoding="utf-8")).get("trained_on", {}):
            metrics["before"] = headline(v1.score_all(old, texts), test, old.threshold)
    metrics["cross_validation"] = {k: v for k, v in cv.items() if not k.startswith("per_")}
    n_shipped_test = sum(1 for e in test if not e.source.startswith("templates-"))
    metrics.update(
        seed=seed, train_rows=len(train_rows), test_rows=n_shipped_test, terms=len(doc["vocabulary"])
    )
    metrics["template_test_rows"] = len(test) - n_shipped_test
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / v1.MODEL_FILE).write_text(
        json.dumps(doc, separators=(",", ":"), ensure_ascii=False), encoding="utf-8"
    )
    (out_dir / v1.METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "policies" / "data")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    m = train(args.out, args.seed, log)
    print(json.dumps({k: m[k] for k in ("must_hold", "before") if k in m}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
