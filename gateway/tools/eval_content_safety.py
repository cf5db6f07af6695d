"""``content_safety`` cases for ``rollguard eval guardrails``: the held-out part of the shipped
harmful / benign request sets and of the labelled replies, as ``gateway.tools.content_data``
splits them for the trainer (``split`` / ``reply_split``, seed 0 by default), so none of these
rows trained the model.

Families (``Case.family``: the kind, then ``_harmful`` or ``_benign``) and categories
(``Case.category``):

- ``content_request_*`` (``pre_call`` on one user message): harmful requests by MLCommons hazard
  category (``S1 violent crimes`` ...; ``unlabelled`` when the source names none: AdvBench,
  XSTest unsafe), benign prompts by source (``xstest-safe`` included);
- ``content_reply_*`` (``post_call`` on the whole completion): harmful replies (real XSTest
  completions that comply with an unsafe prompt, AdvBench targets) and benign replies, by source;
- ``content_stream_*`` (``stream`` stage, the same replies cut into the stream guard's
  256-character windows, ``train_content_safety.stream_windows``): a reply counts as detected
  when any window is.

Outcome of one case: ``block`` (the stage blocked), ``flag`` (``content_safety`` flagged it: its
input findings are flags by default, issue 9 build 3) or ``allow``. ``rollguard eval guardrails``
runs these cases through the configured ``content_safety`` policies alone, so the numbers are the
policy's own (in the full pipeline another policy may block first). Unlike the
injection families, a ``content_safety`` flag *is* a detection here: for a harmful case it counts
towards recall, for a benign one as a false positive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from policies.base import CheckContext
from policies.builtin.content_safety import CATEGORIES
from policies.pipeline import Pipeline
from policies.redteam.generate import Case
from rollguard.types import Stage, Verdict

__all__ = ["DETECTED", "content_cases", "content_headline", "run_content_cases"]

DETECTED = frozenset({"block", "flag"})
"""Outcomes that count as a detection (harmful) or a false positive (benign) for these families."""
_POLICY = "content_safety"


def _category(code: str) -> str:
    return f"{code} {CATEGORIES[code]}" if code in CATEGORIES else "unlabelled"


def content_cases(data_dir: Path, seed: int = 0) -> list[Case]:
    """The held-out request and reply rows as cases (split ``test``): see the module docstring.
    Reply cases carry the reply as one ``assistant`` message (the runner passes it as the
    completion). Raises ``OSError`` when a shipped set is missing."""
    from gateway.tools.content_data import load_rows, reply_rows, reply_split, split

    _, test = split(load_rows(data_dir, seed), seed)
    _, r_test = reply_split(reply_rows(data_dir), test)
    out: list[Case] = []
    for i, r in enumerate(test):
        cat = _category(r.category) if r.label == 1 else r.source
        msg = ({"role": "user", "content": r.text},)
        out.append(
            Case(f"content-req-{i}", _family("content_request", r.label), cat, _LABEL[r.label], "test", msg)
        )
    for kind in ("content_reply", "content_stream"):
        for i, r in enumerate(r_test):
            msg = ({"role": "assistant", "content": r.text},)
            out.append(Case(f"{kind}-{i}", _family(kind, r.label), r.source, _LABEL[r.label], "test", msg))
    return out


_LABEL = {1: "attack", 0: "benign"}


def _family(kind: str, label: int) -> str:
    return f"{kind}_{'harmful' if label == 1 else 'benign'}"


def _outcome_of(blocked: bool, decisions: Sequence[Any]) -> str:
    if blocked:
        return "block"
    flagged = any(d.policy_type == _POLICY and d.verdict is Verdict.FLAG for d in decisions)
    return "flag" if flagged else "allow"


async def _content_outcome(pipeline: Pipeline, case: Case) -> str:
    text = str(case.messages[0]["content"])
    if case.family.startswith("content_request"):
        ctx = CheckContext(stage=Stage.PRE_CALL, messages=[dict(m) for m in case.messages])
        res = await pipeline.run(ctx)
        return _outcome_of(res.blocked, res.decisions)
    if case.family.startswith("content_reply"):
        ctx = CheckContext(stage=Stage.POST_CALL, messages=[], completion=text)
        res = await pipeline.run(ctx)
        return _outcome_of(res.blocked, res.decisions)
    from gateway.tools.train_content_safety import stream_windows

    best = "allow"
    for window in stream_windows(text):
        ctx = CheckContext(stage=Stage.STREAM, messages=[], completion=window)
        res = await pipeline.run(ctx)
        outcome = _outcome_of(res.blocked, res.decisions)
        if outcome == "block":
            return outcome
        best = outcome if outcome == "flag" else best
    return best


def run_content_cases(pipeline: Pipeline, cases: Sequence[Case]) -> tuple[list[str], float]:
    """``(outcomes, mean ms per case)`` of ``cases`` (from ``content_cases``) through ``pipeline``:
    requests at ``pre_call``, replies at ``post_call``, streams window by window at ``stream``."""

    async def go() -> list[str]:
        return [await _content_outcome(pipeline, c) for c in cases]

    t0 = time.perf_counter()
    out = asyncio.run(go())
    return out, (time.perf_counter() - t0) * 1000.0 / max(1, len(cases))


def content_headline(cells: Sequence[Any]) -> dict[str, Any]:
    """The must-hold numbers (issue 9 must-hold 3) from the ``content`` cells: per family the
    harmful recall and the benign false-positive rate (all benign sources), and the XSTest safe
    prompts' rate, each ``{"rate", "n", "ci95"}``."""
    out: dict[str, Any] = {}
    for c in cells:
        if c.source != "content":
            continue
        d = c.to_dict()
        entry = {"rate": d["rate"], "n": d["n"], "ci95": d["ci95"]}
        kind = c.family.rsplit("_", 1)[0]
        if c.category == "*":
            out[f"{kind}.{'recall' if c.label == 'attack' else 'benign_fpr'}"] = entry
        elif kind == "content_request" and c.category == "xstest-safe":
            out["content_request.xstest_safe_fpr"] = entry
    return dict(sorted(out.items()))
