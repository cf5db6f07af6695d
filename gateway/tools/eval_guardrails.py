"""Measure a policy pipeline on the red-team set, BIPIA and the shipped sets: per family and per
category, the share of attacks stopped (recall) and of benign requests blocked (false-positive
rate), each with a 95 % Wilson score interval (``scipy.stats.binomtest(...).proportion_ci(
method="wilson")``; Wilson 1927). Pure and in-process: the pipeline's ``pre_call`` stage runs on
each case; no server, no upstream.

``parity`` measures decode-then-judge apart from the models' recall: the plain payloads of the
encoded attacks alone, and the encoded attacks whose plain payload is caught.

Outcome of one case: ``block`` (the stage blocked), ``strip`` (a policy rewrote the request and
flagged it: ``invisible_text`` removed the hidden tag characters, so the upstream never sees them),
``flag`` (escalated, not stopped) or ``allow``. An attack counts as *stopped* when blocked or
stripped; a benign case is a false positive when blocked.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scipy.stats import binomtest

from policies.base import CheckContext
from policies.pipeline import Pipeline
from policies.redteam.generate import Case
from rollguard.types import Stage, Verdict

__all__ = ["Cell", "bipia_cases", "parity", "run_cases", "shipped_cases", "summarise", "wilson"]


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of ``k`` successes in ``n`` trials; ``(0, 1)`` when ``n`` is 0."""
    if n == 0:
        return 0.0, 1.0
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


async def _outcome(pipeline: Pipeline, case: Case) -> str:
    ctx = CheckContext(stage=Stage.PRE_CALL, messages=[dict(m) for m in case.messages])
    result = await pipeline.run(ctx)
    if result.blocked:
        return "block"
    if result.messages is not None and any(
        d.enforced and d.verdict is Verdict.FLAG and d.policy_type == "invisible_text"
        for d in result.decisions
    ):
        return "strip"
    return "flag" if result.verdict is Verdict.FLAG else "allow"


def run_cases(pipeline: Pipeline, cases: Sequence[Case]) -> tuple[list[str], float]:
    """``(outcomes, mean ms per case)`` of ``cases`` through ``pipeline`` (in order)."""

    async def go() -> list[str]:
        return [await _outcome(pipeline, c) for c in cases]

    t0 = time.perf_counter()
    out = asyncio.run(go())
    return out, (time.perf_counter() - t0) * 1000.0 / max(1, len(cases))


@dataclass(slots=True)
class Cell:
    """One row of the report: ``hits`` stopped attacks (or blocked benign cases) of ``n``."""

    source: str
    split: str
    family: str
    category: str
    label: str
    n: int = 0
    hits: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.hits / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        low, high = wilson(self.hits, self.n)
        metric = "recall" if self.label == "attack" else "false_positive_rate"
        return {
            "source": self.source,
            "split": self.split,
            "family": self.family,
            "category": self.category,
            "label": self.label,
            "metric": metric,
            "n": self.n,
            "hits": self.hits,
            "rate": round(self.rate, 4),
            "ci95": [round(low, 4), round(high, 4)],
            "outcomes": dict(sorted(self.outcomes.items())),
        }


_BY_KIND = frozenset({"encoded", "benign_encoded", "invisible"})
"""Families whose cases carry a payload kind, reported per kind and per kind and category too."""


def summarise(
    source: str, cases: Sequence[Case], outcomes: Sequence[str], detected: Collection[str] | None = None
) -> list[Cell]:
    """Cells per (split, family, category), per (split, family) with category ``*``, and per
    payload kind (family ``encoded[override]``, category ``*`` and each category) where cases
    have one. A case counts (``Cell.hits``) when its outcome is in ``detected``; by default an
    attack counts when stopped (``block`` or ``strip``) and a benign case when blocked."""
    cells: dict[tuple[str, str, str], Cell] = {}
    for case, outcome in zip(cases, outcomes, strict=True):
        keys = [(case.family, case.category), (case.family, "*")]
        if case.payload_kind and case.family in _BY_KIND:
            kind = f"{case.family}[{case.payload_kind}]"
            keys += [(kind, "*"), (kind, case.category)]
        for family, cat in keys:
            key = (case.split, family, cat)
            cell = cells.setdefault(key, Cell(source, case.split, family, cat, case.label))
            cell.n += 1
            cell.outcomes[outcome] = cell.outcomes.get(outcome, 0) + 1
            if detected is not None:
                stopped = outcome in detected
            else:
                stopped = outcome in ("block", "strip") if case.label == "attack" else outcome == "block"
            cell.hits += int(stopped)
    return sorted(cells.values(), key=lambda c: (c.split, c.label, c.family, c.category != "*", c.category))


def parity(pipeline: Pipeline, cases: Sequence[Case], outcomes: Sequence[str]) -> list[Cell]:
    """Decode-then-judge on its own, apart from the policies' recall ("what a policy flags in
    plain text is blocked when it arrives encoded"): each unique plain payload of the ``encoded``
    attacks sent alone as the user message (cells ``plain[<kind>]``, category ``plain``: the
    share *caught*, i.e. flagged or blocked, in plain text), and the encoded attacks whose plain
    payload is caught (cells ``encoded[plain-caught]`` per encoding and ``*``: the share of them
    stopped encoded)."""
    attacks = [(c, o) for c, o in zip(cases, outcomes, strict=True) if c.family == "encoded" and c.payload]
    unique = sorted(
        {(c.split, c.payload): c for c, _ in attacks}.values(), key=lambda c: (c.split, c.payload)
    )
    plain = [
        Case(f"plain-{i}", f"plain[{c.payload_kind}]", "plain", "attack", c.split, _one_user(c.payload))
        for i, c in enumerate(unique)
    ]
    plain_out, _ = run_cases(pipeline, plain)
    caught = {(c.split, c.payload) for c, o in zip(unique, plain_out, strict=True) if o != "allow"}
    flagged_as_stopped = ["block" if o == "flag" else o for o in plain_out]
    both = [(c, o) for c, o in attacks if (c.split, c.payload) in caught]
    relabelled = [replace(c, family="encoded[plain-caught]", payload_kind="") for c, _ in both]
    return summarise("redteam", plain, flagged_as_stopped) + summarise(
        "redteam", relabelled, [o for _, o in both]
    )


def _one_user(text: str) -> tuple[dict[str, Any], ...]:
    return ({"role": "user", "content": text},)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def bipia_cases(data_dir: Path, seed: int = 0) -> list[Case]:
    """BIPIA (``bipia-indirect-injection``): each attack instruction inserted at the start, middle
    or end of an e-mail of the same upstream split, under the e-mail's question; each e-mail with
    its question alone as the benign case. Split: upstream ``train`` -> ``dev``, ``test`` ->
    ``test`` (the folder's own held-out rows are kept from us and not used)."""
    folder = data_dir / "bipia-indirect-injection"
    emails = _jsonl(folder / "email_contexts.jsonl")
    attacks = _jsonl(folder / "attack_instructions.jsonl")
    rng = random.Random(seed)
    out: list[Case] = []
    split_of = {"train": "dev", "test": "test"}
    for a in attacks:
        split = split_of.get(a["bipia_split"], "test")
        pool = [e for e in emails if split_of.get(e["bipia_split"], "test") == split] or emails
        email = rng.choice(pool)
        words = email["context"].split(" ")
        at = rng.choice((0, len(words) // 2, len(words)))
        context = " ".join([*words[:at], a["text"], *words[at:]])
        text = f"{email['question']}\n\n{context}"
        cat = f"{a['attack_family']}:{a['attack_category']}"
        msg = ({"role": "user", "content": text},)
        out.append(Case(f"bipia-{a['id']}", "bipia_attack", cat, "attack", split, msg))
    for e in emails:
        text = f"{e['question']}\n\n{e['context']}"
        msg = ({"role": "user", "content": text},)
        out.append(
            Case(
                f"bipia-{e['id']}",
                "bipia_benign",
                "email",
                "benign",
                split_of.get(e["bipia_split"], "test"),
                msg,
            )
        )
    return out


def shipped_cases(data_dir: Path, limit: int | None = None, seed: int = 0) -> list[Case]:
    """The held-out (test) part of the shipped sets as the injection model's training splits them
    (``gateway.tools.injection_data.load_examples`` / ``assign_splits``): family
    ``shipped_<kind>`` (attack, benign, harmful, hard_negative), category the data set. ``limit``
    samples that many per family (seeded) for quick runs."""
    from gateway.tools.injection_data import assign_splits, load_examples

    examples = load_examples(data_dir, seed)
    is_test = assign_splits(examples, seed)
    by_family: dict[str, list[Case]] = defaultdict(list)
    for i, (e, test) in enumerate(zip(examples, is_test, strict=True)):
        if not test or not e.fit:
            continue
        label = "attack" if e.label == 1 or e.kind == "harmful" else "benign"
        msg = ({"role": e.role if e.role in ("user", "tool") else "user", "content": e.text},)
        family = f"shipped_{e.kind}"
        by_family[family].append(Case(f"shipped-{i}", family, e.source, label, "test", msg))
    rng = random.Random(seed)
    out: list[Case] = []
    for family in sorted(by_family):
        rows = by_family[family]
        out += rng.sample(rows, limit) if limit is not None and len(rows) > limit else rows
    return out


def headline(cells: Iterable[Cell], split: str = "test") -> dict[str, Any]:
    """The must-hold numbers on ``split``: attack families' recall, benign families' FP rate."""
    out: dict[str, Any] = {}
    for c in cells:
        if c.split == split and c.category == "*" and c.source == "redteam":
            low, high = wilson(c.hits, c.n)
            out[c.family] = {"rate": round(c.rate, 4), "n": c.n, "ci95": [round(low, 4), round(high, 4)]}
    return out
