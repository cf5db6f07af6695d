"""Readers for the shipped data sets under ``<repo>/data`` (see each folder's SOURCE.md), used to
train the shipped detector models and by the evaluation. Only local files are read; nothing is
downloaded. Holdout files are never read (they are not shipped).

Every reader raises ``FileNotFoundError`` when its folder is missing.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

XSTEST_MODELS = ("gpt4", "llama2new", "llama2orig", "mistralguard", "mistralinstruct")
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data"


@dataclass(frozen=True, slots=True)
class Exchange:
    """One real (prompt, reply) pair from a shipped set. ``source`` names the set and model;
    ``group`` is the prompt id (for grouped splits); ``label`` is a human refusal label when the set
    has one (``1_full_compliance`` | ``2_full_refusal`` | ``3_partial_refusal``), else ''."""

    id: str
    source: str
    group: str
    prompt: str
    reply: str
    label: str = ""


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def xstest_completions(data_dir: Path = DEFAULT_DATA_DIR) -> list[Exchange]:
    """XSTest v2 completions of five models with their human ``final_label`` (1,530 rows here)."""
    out = []
    for model in XSTEST_MODELS:
        for r in _jsonl(data_dir / "xstest" / f"completions_{model}.jsonl"):
            if not r.get("completion"):
                continue
            out.append(
                Exchange(
                    id=f"xstest-{model}-{r['id']}",
                    source=f"xstest/{model}",
                    group=str(r["id"]),
                    prompt=str(r["prompt"]),
                    reply=str(r["completion"]),
                    label=str(r["final_label"]),
                )
            )
    return out


def xstest_prompts(data_dir: Path = DEFAULT_DATA_DIR) -> list[dict[str, Any]]:
    """XSTest prompts: ``id``, ``prompt``, ``type``, ``label`` (safe | unsafe)."""
    return list(_jsonl(data_dir / "xstest" / "xstest_prompts.jsonl"))


def hh_pairs(data_dir: Path = DEFAULT_DATA_DIR) -> list[dict[str, str]]:
    """hh-rlhf harmless-base test pairs with a last human turn: ``id``, ``prompt`` (the last human
    turn), ``chosen``, ``rejected`` (the last assistant turns). Rows without a shared prefix are
    skipped (5 upstream)."""
    out = []
    for r in _jsonl(data_dir / "hh-rlhf-harmless-base" / "harmless-base_test_pairs.jsonl.gz"):
        if not r.get("prefix") or r.get("chosen_response") is None:
            continue
        prefix = str(r["prefix"])
        human = prefix.rsplit("\n\nHuman:", 1)[-1].split("\n\nAssistant:", 1)[0].strip()
        out.append(
            {
                "id": str(r["id"]),
                "prompt": human,
                "chosen": str(r["chosen_response"]),
                "rejected": str(r["rejected_response"]),
            }
        )
    return out


def arena_answers(data_dir: Path = DEFAULT_DATA_DIR) -> list[Exchange]:
    """arena-hard v0.1 answers of gpt-4-0314, gpt-4-0613 and gpt-3.5-turbo-0125 (350 each)."""
    out = []
    for path in sorted((data_dir / "arena-hard-answers").glob("answers_*.jsonl")):
        for r in _jsonl(path):
            out.append(
                Exchange(
                    id=f"arena-{r['model']}-{r['uid']}",
                    source=f"arena/{r['model']}",
                    group=str(r["uid"]),
                    prompt=str(r["prompt"]),
                    reply=str(r["answer"]),
                )
            )
    return out


def oasst_outputs(data_dir: Path = DEFAULT_DATA_DIR) -> list[Exchange]:
    """OpenAssistant prompt-lottery outputs of four models (710 rows here)."""
    out = []
    for path in sorted((data_dir / "oasst-lottery-model-outputs").glob("outputs_*.jsonl")):
        for r in _jsonl(path):
            out.append(
                Exchange(
                    id=f"oasst-{r['model']}-{r['id']}",
                    source=f"oasst/{r['model']}",
                    group=str(r["id"]),
                    prompt=str(r["prompt"]),
                    reply=str(r["output"]),
                )
            )
    return out


def hh_exchanges(data_dir: Path = DEFAULT_DATA_DIR, side: str = "chosen") -> list[Exchange]:
    """hh-rlhf pairs as exchanges of one side (``chosen`` or ``rejected``)."""
    return [
        Exchange(
            id=f"hh-{side}-{r['id']}", source=f"hh/{side}", group=r["id"], prompt=r["prompt"], reply=r[side]
        )
        for r in hh_pairs(data_dir)
    ]


def clinc(data_dir: Path = DEFAULT_DATA_DIR) -> list[dict[str, str]]:
    """clinc150 queries: ``id``, ``text``, ``intent``, ``domain``."""
    return list(_jsonl(data_dir / "clinc150" / "clinc150_full.jsonl"))


def benign_prompts(data_dir: Path = DEFAULT_DATA_DIR) -> list[str]:
    """Benign user prompts: arena-hard, oasst prompt lottery, MT-bench/Vicuna first turns,
    self-instruct user-oriented instructions, TruthfulQA questions and a 2,000-query clinc150
    sample (every 8th row)."""
    out: list[str] = []
    for r in _jsonl(data_dir / "arena-hard-prompts" / "arena_hard_v0.1_questions.jsonl"):
        out.append(str(r["prompt"]))
    for r in _jsonl(data_dir / "arena-hard-prompts" / "arena_hard_v2.0_questions.jsonl"):
        out.append(str(r["prompt"]))
    for r in _jsonl(data_dir / "oasst-prompt-lottery" / "prompts.jsonl"):
        out.append(str(r["prompt"]))
    for name in ("mt_bench_questions.jsonl", "vicuna_bench_questions.jsonl"):
        for r in _jsonl(data_dir / "mt-bench-vicuna-questions" / name):
            turns = r.get("turns") or [r.get("text", "")]
            out.append(str(turns[0]))
    for r in _jsonl(data_dir / "self-instruct-user-oriented" / "user_oriented_instructions.jsonl"):
        out.append(str(r["instruction"]))
    with open(data_dir / "truthfulqa" / "TruthfulQA.csv", encoding="utf-8") as f:
        out.extend(row["Question"] for row in csv.DictReader(f))
    out.extend(r["text"] for r in clinc(data_dir)[::8])
    return [p for p in out if p.strip()]


def harmful_prompts(data_dir: Path = DEFAULT_DATA_DIR) -> list[str]:
    """Requests a responsible assistant declines: AdvBench goals, HarmBench behaviours and
    Do-Not-Answer prompts."""
    out = [str(r["goal"]) for r in _jsonl(data_dir / "advbench" / "harmful_behaviors.jsonl")]
    out += [
        str(r["Behavior"])
        for r in _jsonl(data_dir / "harmbench-behaviors" / "harmbench_behaviors_text_all.jsonl")
    ]
    out += [str(r["prompt"]) for r in _jsonl(data_dir / "do-not-answer" / "do_not_answer_prompts.jsonl")]
    return out


def refusal_augment() -> list[Exchange]:
    """The hand-written hard cases shipped in ``detectors/data/refusal_augment.jsonl`` (compliant
    replies that say "sorry" or quote a refusal; short bare refusals)."""
    with resources.as_file(resources.files("detectors") / "data" / "refusal_augment.jsonl") as path:
        rows = list(_jsonl(path))
    return [
        Exchange(
            id=f"augment-{i}",
            source="augment",
            group=f"augment-{i}",
            prompt="",
            reply=r["completion"],
            label=r["label"],
        )
        for i, r in enumerate(rows)
    ]
