"""Evaluate the ``pii`` recognisers on the shipped Presidio synthetic set (gold character spans).

Run: ``.venv/bin/python bench/eval_pii.py`` (prints a Markdown table; ``--errors`` also prints the
missed and spurious spans' *types and surrounding template* for error analysis).

Matching rule (span overlap, per entity type): a predicted span is a true positive when it overlaps
a gold span of the same type; a gold span is recalled when some predicted span of the same type
overlaps it. Precision = true-positive predictions / predictions; recall = recalled gold / gold.
Source data: data/presidio-synth-pii/synth_dataset_v2.json (microsoft/presidio-research, MIT).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from policies.builtin.pii_entities import ENTITIES, PiiFinder  # noqa: E402
from policies.builtin.redaction import resolve_overlaps  # noqa: E402

DATA = REPO / "data" / "presidio-synth-pii" / "synth_dataset_v2.json"


@dataclass(frozen=True, slots=True)
class Score:
    """Per-entity counts: ``gold`` spans, ``recalled`` gold spans, ``predicted`` spans,
    ``correct`` predicted spans."""

    gold: int
    recalled: int
    predicted: int
    correct: int

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.recalled / self.gold if self.gold else 1.0


def load(path: Path = DATA) -> list[dict[str, object]]:
    """The records of the shipped set (a JSON array)."""
    with path.open(encoding="utf-8") as fh:
        records: list[dict[str, object]] = json.load(fh)
    return records


def evaluate(records: list[dict[str, object]], errors: list[str] | None = None) -> dict[str, Score]:
    """Per supported entity type, the ``Score`` of ``PiiFinder`` on ``records``."""
    finder = PiiFinder()
    gold_n: Counter[str] = Counter()
    recalled: Counter[str] = Counter()
    pred_n: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for rec in records:
        text = str(rec["full_text"])
        gold = [(s["entity_type"], s["start_position"], s["end_position"]) for s in rec["spans"]]  # type: ignore[attr-defined]
        preds = resolve_overlaps(finder(text))
        for kind, gs, ge in gold:
            if kind not in ENTITIES:
                continue
            gold_n[kind] += 1
            if any(p.kind == kind and p.start < ge and gs < p.end for p in preds):
                recalled[kind] += 1
            elif errors is not None:
                errors.append(f"MISS {kind}: {text[max(0, gs - 30) : ge + 10]!r}")
        for p in preds:
            pred_n[p.kind] += 1
            if any(p.kind == kind and p.start < ge and gs < p.end for kind, gs, ge in gold):
                correct[p.kind] += 1
            elif errors is not None:
                over = [k for k, gs, ge in gold if p.start < ge and gs < p.end]
                errors.append(
                    f"FP {p.kind} (gold {over or '-'}): {text[max(0, p.start - 30) : p.end + 10]!r}"
                )
    return {k: Score(gold_n[k], recalled[k], pred_n[k], correct[k]) for k in ENTITIES}


def table(scores: dict[str, Score]) -> str:
    """A Markdown table of the scores."""
    lines = [
        "| entity | gold spans | recall | predicted | precision |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for kind, s in scores.items():
        lines.append(f"| {kind} | {s.gold} | {s.recall:.3f} | {s.predicted} | {s.precision:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--errors", action="store_true", help="print missed and spurious spans")
    args = ap.parse_args()
    errs: list[str] | None = [] if args.errors else None
    records = load()
    print(f"records: {len(records)} ({DATA.relative_to(REPO)})\n")
    print(table(evaluate(records, errs)))
    if errs:
        print()
        print("\n".join(errs))


if __name__ == "__main__":
    main()
