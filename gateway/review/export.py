"""Preference-data export from decided review items, in the shapes TRL's trainers load.

- ``dpo``: ``{"prompt", "chosen", "rejected"}`` (TRL ``DPOTrainer`` preference format) from
  (a) pairwise verdicts on a canary/control comparison with the *same* conversation (a
  nearest-but-different prompt is not a valid pair) and a majority preference, and (b) a
  reviewer's corrected reply (chosen) against the original completion (rejected).
- ``kto``: ``{"prompt", "completion", "label"}`` (TRL ``KTOTrainer`` unpaired format). TRL's
  ``label`` says whether *the completion* is desired (True) or undesired (False) as a reply to the
  prompt, so a row is written only when the final verdict judged the completion (``kto_label``):
  an ``acceptable`` label is True; a label that ``judges: reply`` (hedging, sycophancy, ...) is
  False; a label that ``judges: alert`` (policy violation) is False only when the flagged evidence
  includes the reply (an output-stage decision, a flagged signal on the completion, an anomaly),
  and otherwise - a violation in the *input* only - says nothing about the completion: no row
  (counted in ``ExportResult.skipped``). Corrected replies are True rows; the two sides of a
  preferred pair True / False rows.
- ``jsonl``: ``{"messages": [...]}`` supervised fine-tuning rows (TRL ``SFTTrainer``
  conversational format) from corrected replies.

Form: *conversational* (lists of ``{"role", "content"}``) when any exported prompt has a history
(more than one message), otherwise *standard* (plain strings); one form per file so that the
columns have one type. Every row has ``provenance``: item, queue, source, variant, model,
detectors, reviewer count, agreement (share of verdicts equal to the final label), posterior.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis

from detectors.agreement import dawid_skene
from gateway.review.config import LabelSpec, ReviewSettings, default_taxonomy
from gateway.review.queue import ReviewItem, ReviewQueues
from gateway.review.service import votes_of
from gateway.store.errors import redis_errors
from gateway.store.keys import REVIEW_DECIDED_MATCH, review_queue_of
from gateway.store.streams import text
from rollguard.errors import InvalidRequest
from rollguard.settings import RollguardSettings
from rollguard.types import text_of

log = logging.getLogger("rollguard.review")

Format = Literal["dpo", "kto", "jsonl"]

OUTPUT_STAGES = frozenset({"post_call", "stream"})
"""Policy stages that check the reply (``rollguard.types.Stage``); ``pre_call`` checks the input."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    """``rows`` written to ``path`` in ``format``; ``conversational`` tells the form; ``skipped``
    decided items whose verdict did not judge the completion (``kto`` only, see ``kto_label``)."""

    path: Path
    format: str
    rows: int
    conversational: bool
    skipped: int = 0


def reply_flagged(payload: Mapping[str, Any]) -> bool:
    """True when what raised the item includes the reply: an anomaly (detectors judge replies), a
    non-allow policy decision at an output stage (``post_call``/``stream``; without a stage, one
    whose evidence points outside ``messages``), or a flagged per-interaction signal (signals are
    computed on the completion). False when only the input (``pre_call``) was flagged."""
    if payload.get("kind") == "anomaly":
        return True
    for d in payload.get("decisions") or []:
        if not isinstance(d, Mapping) or d.get("verdict") == "allow":
            continue
        stage = d.get("stage")
        if stage in OUTPUT_STAGES:
            return True
        if not stage:
            evidence = [e for e in d.get("evidence") or [] if isinstance(e, Mapping)]
            locations = [str(e.get("location") or "") for e in evidence]
            if any(loc and not loc.startswith("messages") for loc in locations):
                return True
    signals = payload.get("signals") or {}
    return isinstance(signals, Mapping) and any(
        isinstance(sig, Mapping) and sig.get("flagged") for sig in signals.values()
    )


def kto_label(spec: LabelSpec | None, payload: Mapping[str, Any]) -> bool | None:
    """The KTO ``label`` of an item's completion under its final verdict label ``spec``: True
    (desired), False (undesired) or None (the verdict did not judge the completion: no row).

    ``acceptable`` -> True; ``judges == "reply"`` -> False; ``judges == "alert"`` -> False when
    ``reply_flagged(payload)``, else None (the violation was in the input; a harmless reply to a
    violating prompt must not become a negative example). A label unknown to the taxonomy -> None."""
    if spec is None:
        return None
    if spec.acceptable:
        return True
    if spec.judges == "reply" or reply_flagged(payload):
        return False
    return None


def _messages(raw: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [{"role": str(m.get("role", "user")), "content": text_of(m.get("content"))} for m in raw]


@dataclass(slots=True)
class _Row:
    prompt: list[dict[str, str]]
    fields: dict[str, Any]
    provenance: dict[str, Any]


def _provenance(it: ReviewItem, label: str | None, posterior: float | None, kind: str) -> dict[str, Any]:
    labels = [str(v.get("label")) for v in it.verdicts.values()]
    agree = sum(1 for lab in labels if lab == label) / len(labels) if labels else 0.0
    return {
        "kind": kind,
        "item_id": it.id,
        "queue": it.queue,
        "source": it.source,
        "source_id": it.source_id,
        "variant": it.variant,
        "model": it.model,
        "detectors": list(it.detectors),
        "reviewer_count": len(labels),
        "label": label,
        "agreement": round(agree, 4),
        "posterior": round(posterior if posterior is not None else agree, 4),
    }


def _final(it: ReviewItem, agg: Mapping[str, Any]) -> tuple[str | None, float | None]:
    if it.final_label:
        return it.final_label, 1.0
    if it.id in agg:
        return str(agg[it.id].label), float(agg[it.id].posterior)
    labels = [str(v.get("label")) for v in it.verdicts.values()]
    if labels and len(set(labels)) == 1:
        return labels[0], None
    return None, None


def _preference(it: ReviewItem) -> str | None:
    prefs = Counter(str(v["preference"]) for v in it.verdicts.values() if v.get("preference"))
    prefs.pop("tie", None)
    if not prefs:
        return None
    top = prefs.most_common(2)
    if len(top) == 2 and top[0][1] == top[1][1]:
        return None
    return top[0][0]


def rows_for(
    fmt: Format, items: Sequence[ReviewItem], settings: ReviewSettings, skipped: list[str] | None = None
) -> list[_Row]:
    """The export rows (before the conversational/standard form is chosen). Ids of items whose
    verdict gave no KTO row for their completion (``kto_label`` None) are appended to ``skipped``."""
    agg_by_queue: dict[str, Any] = {}
    for q in {it.queue for it in items}:
        agg_by_queue[q] = dawid_skene(votes_of([it for it in items if it.queue == q]))
    rows: list[_Row] = []
    for it in items:
        label, post = _final(it, agg_by_queue.get(it.queue, {}))
        p = it.payload
        prompt = _messages(p.get("messages") or [])
        completion = p.get("completion")
        corrections = [str(v["corrected"]) for v in it.verdicts.values() if v.get("corrected")]
        cmp: dict[str, Any] = p.get("comparison") or {}
        pref = _preference(it) if cmp else None
        same_prompt = bool(cmp) and cmp["canary"].get("messages") == cmp["control"].get("messages")
        if pref and same_prompt:
            chosen = cmp[pref]
            rejected = cmp["control" if pref == "canary" else "canary"]
            cp = _messages(chosen.get("messages") or [])
            prov = _provenance(it, label, post, "pairwise")
            prov["variant"] = chosen.get("variant")
            c_text, r_text = str(chosen.get("completion") or ""), str(rejected.get("completion") or "")
            if fmt == "dpo":
                rows.append(_Row(cp, {"chosen": c_text, "rejected": r_text}, prov))
            elif fmt == "kto":
                rows.append(_Row(cp, {"completion": c_text, "label": True}, prov))
                rows.append(
                    _Row(
                        cp,
                        {"completion": r_text, "label": False},
                        dict(prov, variant=rejected.get("variant")),
                    )
                )
        if not prompt:
            continue
        for corrected in corrections:
            prov = _provenance(it, label, post, "correction")
            if fmt == "dpo" and isinstance(completion, str):
                rows.append(_Row(prompt, {"chosen": corrected, "rejected": completion}, prov))
            elif fmt == "kto":
                rows.append(_Row(prompt, {"completion": corrected, "label": True}, prov))
            elif fmt == "jsonl":
                rows.append(_Row(prompt, {"completion": corrected}, prov))
        if fmt == "kto" and isinstance(completion, str) and label is not None:
            desired = kto_label(settings.label(label), p)
            if desired is None:
                if skipped is not None:
                    skipped.append(it.id)
                continue
            prov = _provenance(it, label, post, "verdict")
            rows.append(_Row(prompt, {"completion": completion, "label": desired}, prov))
    return rows


def render(fmt: Format, rows: Sequence[_Row]) -> tuple[list[dict[str, Any]], bool]:
    """Rows in TRL shape; conversational when any prompt has a history (> 1 message)."""
    conversational = fmt == "jsonl" or any(len(r.prompt) > 1 for r in rows)
    out: list[dict[str, Any]] = []
    for r in rows:
        if fmt == "jsonl":
            msgs = [*r.prompt, {"role": "assistant", "content": r.fields["completion"]}]
            out.append({"messages": msgs, "provenance": r.provenance})
            continue
        prompt: Any = r.prompt if conversational else (r.prompt[-1]["content"] if r.prompt else "")
        row: dict[str, Any] = {"prompt": prompt}
        for key in ("chosen", "rejected", "completion"):
            if key in r.fields:
                text = r.fields[key]
                row[key] = [{"role": "assistant", "content": text}] if conversational else text
        if "label" in r.fields:
            row["label"] = bool(r.fields["label"])
        row["provenance"] = r.provenance
        out.append(row)
    return out, conversational


async def _queue_names(redis: aioredis.Redis) -> list[str]:
    names: set[str] = set()
    with redis_errors("cannot list the review queues"):
        async for key in redis.scan_iter(match=REVIEW_DECIDED_MATCH, count=500):
            names.add(review_queue_of(text(key)))
    return sorted(names)


async def export_preferences(
    redis: aioredis.Redis,
    fmt: Format,
    out: Path,
    settings: ReviewSettings | None = None,
    queues: Sequence[str] | None = None,
) -> ExportResult:
    """Write decided items of ``queues`` (default: every queue with decided items) to ``out`` as
    JSON lines in ``fmt`` (``dpo`` | ``kto`` | ``jsonl``). Items past their retention TTL are
    gone and not exported. Raises ``InvalidRequest`` for an unknown format, ``StoreError`` when
    Redis fails, ``OSError`` when ``out`` cannot be written."""
    if fmt not in ("dpo", "kto", "jsonl"):
        raise InvalidRequest(f"unknown export format {fmt!r} (dpo, kto, jsonl)", param="format")
    settings = settings or ReviewSettings(taxonomy=default_taxonomy())
    store = ReviewQueues(redis)
    names = list(queues) if queues is not None else await _queue_names(redis)
    items: list[ReviewItem] = []
    for q in names:
        if q == settings.adjudication_queue:
            continue
        items += await store.decided_items(q)
    skipped: list[str] = []
    rendered, conversational = render(fmt, rows_for(fmt, items, settings, skipped))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fh:
        for row in rendered:
            fh.write(orjson.dumps(row) + b"\n")
    if skipped:
        log.info("kto export: %d verdict(s) judged the input, not the completion: no row", len(skipped))
    return ExportResult(out, fmt, len(rendered), conversational, skipped=len(skipped))


async def export_from_settings(settings: RollguardSettings, fmt: str, out: Path) -> ExportResult:
    """``rollguard review export``: connect to the configured store (the embedded Valkey under
    ``store.data_dir`` when no URL is set), export every queue named in ``review`` config with
    decided items, and return the ``ExportResult`` (rows written, items skipped). Raises
    ``InvalidRequest`` for an unknown format, ``ConfigError`` for a bad ``review`` section or a store
    holding no rollguard data (``gateway.store.locate``),
    ``StoreError`` when Redis fails."""
    from gateway.review.config import parse_review_settings
    from gateway.store.client import connect
    from gateway.store.locate import require_rollguard_data

    if fmt not in ("dpo", "kto", "jsonl"):
        raise InvalidRequest(f"unknown export format {fmt!r} (dpo, kto, jsonl)", param="format")
    review = parse_review_settings(settings.review)
    async with connect(settings.store) as redis:
        await require_rollguard_data(redis, settings.store)
        return await export_preferences(redis, fmt, out, settings=review)  # type: ignore[arg-type]
