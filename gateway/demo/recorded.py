"""Recorded assistant replies from the shipped answer sets, looked up by prompt.

Sources (``data/``, licences in each ``SOURCE.md``): ``arena-hard-answers`` (gpt-4-0314 = good,
gpt-3.5-turbo-0125 = regressed), ``oasst-lottery-model-outputs`` (gpt-4 = good, gpt-3.5-turbo =
regressed), ``xstest`` completions (gpt4 = good, llama2orig = regressed: the over-refusing model),
``hh-rlhf-harmless-base`` pairs (chosen = good, rejected = regressed; the prompt is the last human
turn).

``RecordedAnswers.reply(prompt, variant)``: the exact prompt (whitespace-normalised, case-folded)
first, else the nearest prompt by TF-IDF cosine similarity (scikit-learn ``TfidfVectorizer``,
word 1-2 grams, sublinear tf; built once in ``__init__``, ~1 s for ~5,000 prompts).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollguard.settings import load_settings

VARIANTS = ("good", "regressed")


def data_dir() -> Path:
    """The settings' ``data_dir`` (``$ROLLGUARD_DATA_DIR``) or ``data/`` at the repository root."""
    configured = load_settings().data_dir
    return configured if configured is not None else Path(__file__).resolve().parents[2] / "data"


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


@dataclass(frozen=True, slots=True)
class Recorded:
    prompt: str
    good: str
    regressed: str
    source: str


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _pairs(good: Path, bad: Path, key: str, prompt: str, answer: str, source: str) -> Iterator[Recorded]:
    if not good.exists():
        return
    regressed = {r[key]: r[answer] for r in _jsonl(bad)} if bad.exists() else {}
    for r in _jsonl(good):
        text = r.get(answer)
        if isinstance(text, str) and text.strip() and isinstance(r.get(prompt), str):
            alt = regressed.get(r[key])
            yield Recorded(r[prompt], text, alt if isinstance(alt, str) and alt.strip() else text, source)


def _hh(path: Path) -> Iterator[Recorded]:
    if not path.exists():
        return
    for r in _jsonl(path):
        turns = str(r.get("prefix", "")).split("\n\nHuman: ")
        last = turns[-1].split("\n\nAssistant:")[0].strip() if len(turns) > 1 else ""
        chosen, rejected = r.get("chosen_response"), r.get("rejected_response")
        if last and isinstance(chosen, str) and chosen.strip():
            yield Recorded(
                last, chosen, rejected if isinstance(rejected, str) else chosen, "hh-rlhf-harmless-base"
            )


def load_recorded(root: Path | None = None) -> list[Recorded]:
    """Every recorded (prompt, good reply, regressed reply) from the shipped data under ``root``."""
    root = root or data_dir()
    rows: list[Recorded] = []
    a = root / "arena-hard-answers"
    rows += _pairs(
        a / "answers_gpt-4-0314.jsonl",
        a / "answers_gpt-3.5-turbo-0125.jsonl",
        "uid",
        "prompt",
        "answer",
        "arena",
    )
    o = root / "oasst-lottery-model-outputs"
    rows += _pairs(
        o / "outputs_gpt-4.jsonl", o / "outputs_gpt-3.5-turbo.jsonl", "id", "prompt", "output", "oasst"
    )
    x = root / "xstest"
    rows += _pairs(
        x / "completions_gpt4.jsonl",
        x / "completions_llama2orig.jsonl",
        "id",
        "prompt",
        "completion",
        "xstest",
    )
    rows += _hh(root / "hh-rlhf-harmless-base" / "harmless-base_test_pairs.jsonl.gz")
    return rows


class RecordedAnswers:
    """Prompt -> recorded reply. Raises ``FileNotFoundError`` when no answer set is found."""

    def __init__(self, rows: list[Recorded] | None = None) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.rows = rows if rows is not None else load_recorded()
        if not self.rows:
            raise FileNotFoundError(f"no recorded answers under {data_dir()}")
        self._exact: dict[str, int] = {}
        for i, r in enumerate(self.rows):
            self._exact.setdefault(normalise(r.prompt), i)
        # Nearest-neighbour answers come from the assistant answer sets only: the hh-rlhf pairs are
        # red-team transcripts whose replies, out of context, make a poor demo answer to an
        # unrelated prompt. They still answer their own prompts exactly.
        self._nn = [i for i, r in enumerate(self.rows) if r.source != "hh-rlhf-harmless-base"] or list(
            range(len(self.rows))
        )
        self._vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1, max_features=200_000)
        self._matrix = self._vec.fit_transform([self.rows[i].prompt for i in self._nn])

    def __len__(self) -> int:
        return len(self.rows)

    def lookup(self, prompt: str) -> Recorded:
        """The row of ``prompt``: exact match, else TF-IDF nearest neighbour (row 0 if no term is
        shared)."""
        i = self._exact.get(normalise(prompt))
        if i is None:
            sims = self._matrix @ self._vec.transform([prompt]).T
            i = self._nn[int(sims.toarray().ravel().argmax()) if sims.nnz else 0]
        return self.rows[i]

    def reply(self, prompt: str, variant: str = "good") -> str:
        """The recorded reply for ``prompt``; ``variant`` ``good`` or ``regressed``."""
        row = self.lookup(prompt)
        return row.regressed if variant == "regressed" else row.good
