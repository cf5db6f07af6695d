"""Deterministic rollout test traffic from the shipped data (scored once per test session).

* ``base``: real replies of arena-hard (3 models) and the OpenAssistant lottery (4 models), as
  ``rollguard detect`` records: the shipped traffic of an A/A replay.
* ``refusal_canary(points)``: ``base`` with ``round(points * n)`` non-refusing replies replaced by
  XSTest full refusals (human label ``2_full_refusal``) that the refusal detector flags: the
  detector's refusal rate is exactly ``points`` higher.
* ``longer``: every ``base`` reply lengthened to 1.3 times its characters with whole sentences of
  other ``base`` replies that no detector flags.
"""

from __future__ import annotations

import random
from functools import cache
from typing import Any

import numpy as np

from detectors.features import sentences
from detectors.rollout_replay import Pool, score_records
from detectors.shortcuts import ShortcutDetectors
from gateway.tools import shipped


def _record(prompt: str, reply: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], "completion": reply}


@cache
def detectors() -> ShortcutDetectors:
    return ShortcutDetectors()


@cache
def base_records() -> tuple[dict[str, Any], ...]:
    ex = shipped.arena_answers() + shipped.oasst_outputs()
    return tuple(_record(e.prompt, e.reply) for e in ex)


@cache
def base() -> Pool:
    return score_records(base_records(), detectors())


@cache
def refusals() -> Pool:
    """XSTest full refusals the refusal detector flags."""
    rows = [e for e in shipped.xstest_completions() if e.label == "2_full_refusal"]
    pool = score_records([_record(e.prompt, e.reply) for e in rows], detectors())
    return pool.take(np.flatnonzero(pool.columns["refusal_rate"] == 1.0))


def refusal_canary(points: float, seed: int = 0) -> Pool:
    """``base`` with the refusal rate ``points`` (0.05 = 5 points) higher."""
    b, r = base(), refusals()
    rng = random.Random(seed)
    non = [i for i in range(b.n) if b.columns["refusal_rate"][i] == 0.0]
    replaced = set(rng.sample(non, round(points * b.n)))
    keep = [i for i in range(b.n) if i not in replaced]
    donors = [rng.randrange(r.n) for _ in replaced]
    return b.take(keep).concat(r.take(donors))


@cache
def longer(factor: float = 1.3, seed: int = 0) -> Pool:
    """Every base reply padded to ``factor`` times its characters (sentences of unflagged replies)."""
    b, recs = base(), base_records()
    flagged = np.zeros(b.n, dtype=bool)
    for name, col in b.columns.items():
        if name.endswith("_rate") and name in {
            f"{d}_rate" for d in ("refusal", "hedging", "sycophancy", "repetition", "evasion")
        }:
            flagged |= col == 1.0
    donors = [s.text for i in np.flatnonzero(~flagged) for s in sentences(recs[i]["completion"])]
    rng = random.Random(seed)
    out = []
    for rec in recs:
        reply = rec["completion"]
        target = int(len(reply) * factor)
        while len(reply) < target:
            reply += " " + donors[rng.randrange(len(donors))]
        out.append({**rec, "completion": reply[: max(target, len(rec["completion"]))]})
    return score_records(out, detectors())
