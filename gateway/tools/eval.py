"""Replay evaluation of the window detectors on the shipped real data, with faults injected at
known positions (issue 3, part 4). Pure computation; ``bench/eval_detectors.py`` writes the JSON
report and the plots.

Traffic pool: real (prompt, reply) pairs — hh-rlhf harmless-base chosen replies, arena-hard answers
(3 models), OpenAssistant lottery outputs (4 models), XSTest completions (5 models) — each scored
once by ``ShortcutDetectors``. A replay draws from the pool with replacement in a seeded order, so
the stream is stationary unless a fault is injected.

Scenarios: ``aa`` (two arms from the same traffic, no fault), ``topic_shift`` (clinc150 domains
switch at a known request), ``regressed_canary`` (10 % canary answering with hh-rlhf rejected
replies, or gpt-3.5 vs gpt-4 on arena-hard), ``refusal_canary`` (+5 points of refusals on a 10 %
canary), and synthetic shifts over time (+30 % length, +5 points refusals, doubled hedges).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.drift import Alert, InputItem
from detectors.engine import EngineConfig, Observation, WindowEngine
from detectors.features import sentences
from detectors.reference_model import ReferenceModel
from detectors.shortcuts import DETECTORS, ShortcutDetectors
from gateway.tools import shipped
from rollguard.types import Signal


@dataclass(slots=True)
class PoolItem:
    """A scored real exchange: metric values for the window detectors and the prompt's features."""

    id: str
    source: str
    prompt: str
    reply: str
    metrics: dict[str, float]
    cluster: int


def score_pool(
    exchanges: Sequence[shipped.Exchange], det: ShortcutDetectors, ref: ReferenceModel, batch: int = 256
) -> list[PoolItem]:
    """Score exchanges with every shortcut detector (batched) and keep what the window needs."""
    out: list[PoolItem] = []
    for i in range(0, len(exchanges), batch):
        chunk = exchanges[i : i + batch]
        convs = [[{"role": "user", "content": e.prompt}] for e in chunk]
        sigs = det.score_batch(convs, [e.reply for e in chunk])
        clusters = ref.clusters([e.prompt for e in chunk])
        for e, s, c in zip(chunk, sigs, clusters, strict=True):
            out.append(PoolItem(e.id, e.source, e.prompt, e.reply, _metrics(s, e.reply), int(c)))
    return out


def _metrics(sig: dict[str, Signal], reply: str) -> dict[str, float]:
    m = {d: (1.0 if sig[d].flagged else 0.0) for d in DETECTORS}
    m["reply_log_chars"] = math.log(max(len(reply), 1))
    m["blocked"] = 0.0
    m["error"] = 0.0
    return m


def observation_of(
    item: PoolItem, seq: int, variant: str, tenant: str = "t1", model: str = "m"
) -> Observation:
    """The observation of pool item ``item`` replayed as request number ``seq``."""
    rid = f"{seq:06d}:{item.id}"
    inp = InputItem(
        id=rid,
        ts_ms=1_700_000_000_000 + seq * 100,
        text=item.prompt,
        categorical={
            "topic_cluster": str(item.cluster),
            "tenant": tenant,
            "tool_use": "no",
            "language": "latin",
        },
        numeric={"prompt_log_chars": math.log(max(len(item.prompt), 1)), "turns": 1.0},
    )
    return Observation(rid, inp.ts_ms, variant, model, tenant, dict(item.metrics), inp)


@dataclass(slots=True)
class RunResult:
    """Firings of one replay (with the request index at which each fired), the alert lifecycle
    events (request index of the drain that returned them) and traces."""

    n: int
    alerts: list[tuple[int, Alert]] = field(default_factory=list)
    traces: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    @property
    def anomalies(self) -> list[tuple[int, dict[str, Any]]]:
        """The emitted anomalies: ``open`` events."""
        return [(i, e) for i, e in self.events if e["event"] == "open"]

    def first(self, pred: Callable[[Alert], bool], after: int = 0) -> int | None:
        for i, a in self.alerts:
            if i >= after and pred(a):
                return i
        return None


def replay(
    stream: Sequence[Observation],
    config: EngineConfig,
    trace: Sequence[tuple[str, str]] = (),
    batch: int = 100,
) -> RunResult:
    """Feed ``stream`` to a fresh engine, draining the alert lifecycle every ``batch`` requests
    (the worker drains once per batch of that size). ``trace`` lists ``(group_key, metric)`` CUSUMs
    whose ``(index, max(S+, S-), h)`` are recorded every 10 requests (for the plots)."""
    eng = WindowEngine(config)
    res = RunResult(len(stream))
    for i, obs in enumerate(stream):
        for a in eng.update(obs):
            res.alerts.append((i, a))
        if (i + 1) % batch == 0 or i + 1 == len(stream):
            res.events.extend((i, e) for e in eng.drain())
        if trace and i % 10 == 0:
            for gk, metric in trace:
                mon = eng.monitors.get(gk, {}).get(metric)
                if mon is not None and mon.calibrated:
                    res.traces.setdefault(f"{gk}/{metric}", []).append((i, max(mon.s_hi, mon.s_lo), mon.h))
    return res


# ---- scenarios ----------------------------------------------------------------------------------------


def aa_stream(pool: Sequence[PoolItem], n: int, seed: int, canary_share: float = 0.5) -> list[Observation]:
    """A/A: ``n`` draws with replacement; each request goes to ``canary`` with ``canary_share``."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        item = pool[rng.randrange(len(pool))]
        variant = "canary" if rng.random() < canary_share else "control"
        out.append(observation_of(item, i, variant, tenant=rng.choice(("t1", "t2"))))
    return out


def false_alarms_per_10k(res: RunResult) -> dict[str, float]:
    """Alerts per 10,000 requests, per detector (all groups pooled)."""
    c = Counter(a.detector for _, a in res.alerts)
    return {d: round(10_000 * k / res.n, 3) for d, k in sorted(c.items())}


def one_shift_stream(
    base: Sequence[PoolItem],
    shifted: Sequence[PoolItem],
    n_before: int,
    n_shift: int,
    n_after: int,
    seed: int,
    canary_share: float = 0.1,
) -> list[Observation]:
    """Production-like traffic (a ``canary_share`` canary, two tenants, one model) drawn from
    ``base``, then ``n_shift`` requests from ``shifted`` for every variant and tenant (one real
    shift reaching every group), then ``n_after`` from ``base`` again (the shift goes away)."""
    rng = random.Random(seed)
    out = []
    for i in range(n_before + n_shift + n_after):
        src = shifted if n_before <= i < n_before + n_shift else base
        variant = "canary" if rng.random() < canary_share else "control"
        item = src[rng.randrange(len(src))]
        out.append(observation_of(item, i, variant, tenant=rng.choice(("t1", "t2"))))
    return out


def clinc_items(ref: ReferenceModel, domains: Sequence[str], seed: int) -> list[PoolItem]:
    """clinc150 queries of ``domains`` as pool items (no reply: only input drift applies)."""
    rows = [r for r in shipped.clinc() if r["domain"] in domains]
    random.Random(seed).shuffle(rows)
    clusters = ref.clusters([r["text"] for r in rows])
    return [
        PoolItem(r["id"], "clinc/" + r["domain"], r["text"], "", {}, int(c))
        for r, c in zip(rows, clusters, strict=True)
    ]


def topic_shift_stream(
    before: Sequence[PoolItem], after: Sequence[PoolItem], n: int, onset: int, seed: int, mix: float = 1.0
) -> list[Observation]:
    """Requests from ``before`` until ``onset``; afterwards from ``after`` with probability
    ``mix`` (else still ``before``)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        src = after if i >= onset and rng.random() < mix else before
        out.append(observation_of(src[rng.randrange(len(src))], i, "control"))
    return out


def canary_stream(
    control: Sequence[PoolItem], canary: Sequence[PoolItem], n: int, share: float, seed: int
) -> list[Observation]:
    """Each request goes to the canary with probability ``share`` and is answered from its pool."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if rng.random() < share:
            out.append(observation_of(canary[rng.randrange(len(canary))], i, "canary"))
        else:
            out.append(observation_of(control[rng.randrange(len(control))], i, "control"))
    return out


def shifted_stream(
    base: Sequence[PoolItem], shifted: Sequence[PoolItem], n: int, onset: int, seed: int
) -> list[Observation]:
    """Draws from ``base`` before ``onset`` and from ``shifted`` after (one arm, over time)."""
    rng = random.Random(seed)
    return [
        observation_of((shifted if i >= onset else base)[rng.randrange(len(base))], i, "control")
        for i in range(n)
    ]


# ---- synthetic faults on real replies --------------------------------------------------------------------


def lengthen(items: Sequence[PoolItem], factor: float, seed: int) -> list[shipped.Exchange]:
    """Each reply padded to ``factor`` times its length with sentences of other real replies."""
    rng = random.Random(seed)
    out = []
    for it in items:
        target = int(len(it.reply) * factor)
        text = it.reply
        while len(text) < target:
            donor = items[rng.randrange(len(items))].reply
            sents = sentences(donor)
            if not sents:
                continue
            text += " " + sents[rng.randrange(len(sents))].text
        out.append(
            shipped.Exchange(it.id + ":long", it.source, it.id, it.prompt, text[: max(target, len(it.reply))])
        )
    return out


_HEDGES = ("It may be that", "Perhaps", "Generally speaking,", "In some cases,", "It is possible that")
_HEDGE_COUNT = re.compile(
    r"\b(?:might|may|perhaps|possibly|probably|generally|typically|usually|likely)\b", re.I
)


def double_hedges(items: Sequence[PoolItem], seed: int) -> list[shipped.Exchange]:
    """Each reply with as many extra hedge phrases as it had (at least one), each placed at the start
    of a random sentence."""
    rng = random.Random(seed)
    out = []
    for it in items:
        sents = sentences(it.reply)
        k = max(len(_HEDGE_COUNT.findall(it.reply)), 1)
        text = it.reply
        if sents:
            starts = sorted({sents[rng.randrange(len(sents))].start for _ in range(k)}, reverse=True)
            for s in starts:
                h = rng.choice(_HEDGES)
                word = text[s : s + 1].lower()
                text = text[:s] + h + " " + word + text[s + 1 :]
        out.append(shipped.Exchange(it.id + ":hedge", it.source, it.id, it.prompt, text))
    return out


def add_refusals(
    base: Sequence[PoolItem], refusals: Sequence[PoolItem], points: float, seed: int
) -> list[PoolItem]:
    """A pool whose refusal flag rate is ``points`` higher: enough non-refusing items are replaced by
    real refusing replies (XSTest full refusals, scored by the detector) to shift the rate."""
    rng = random.Random(seed)
    non = [i for i, it in enumerate(base) if it.metrics.get("refusal", 0.0) < 0.5]
    k = round(points * len(base))
    out = list(base)
    for idx in rng.sample(non, k):
        r = refusals[rng.randrange(len(refusals))]
        out[idx] = PoolItem(
            r.id + ":ref", r.source, base[idx].prompt, r.reply, dict(r.metrics), base[idx].cluster
        )
    return out


def summarise(values: Sequence[int | None]) -> dict[str, Any]:
    """Detection delays over runs: detected count, median and max (None = missed)."""
    hit = [v for v in values if v is not None]
    return {
        "runs": len(values),
        "detected": len(hit),
        "median": float(np.median(hit)) if hit else None,
        "max": max(hit) if hit else None,
        "delays": list(values),
    }
