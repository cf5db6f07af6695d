"""Evidence highlighting and canary/control pairing for the console. Pure functions.

Evidence (``rollguard.types.Evidence`` as dicts) names a location (``messages[2].content``,
``completion``) and character offsets ``start``/``end`` (end exclusive) into that text; PII
placeholders written by the redaction (``<EMAIL_ADDRESS_1>``) are highlighted wherever they occur.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollguard.types import text_of

PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_\d+>")
"""A redaction placeholder: ``<KIND_n>`` (``policies.base.RedactionVault``)."""
_LOCATION = re.compile(r"^messages\[(\d+)\]")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Mark:
    """One highlighted span of a text: ``[start, end)`` characters, ``label`` such as
    ``pii: EMAIL_ADDRESS`` or ``hedging: hedge_phrase``; ``kind`` a CSS class family."""

    start: int
    end: int
    label: str
    kind: str


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of text and the labels of every mark covering it (empty = plain text)."""

    text: str
    labels: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    @property
    def marked(self) -> bool:
        return bool(self.labels)


def location_key(location: str) -> str | None:
    """``messages[3].content...`` -> ``m3``; ``completion`` -> ``completion``; else None."""
    if location.startswith("completion"):
        return "completion"
    m = _LOCATION.match(location)
    return f"m{m.group(1)}" if m else None


def marks_by_location(
    decisions: Iterable[Mapping[str, Any]], signals: Mapping[str, Any] | None = None
) -> dict[str, list[Mark]]:
    """Location key -> marks from each decision's and signal's evidence with offsets."""
    out: dict[str, list[Mark]] = {}

    def add(source: str, kind: str, evidence: Iterable[Mapping[str, Any]]) -> None:
        for ev in evidence:
            key = location_key(str(ev.get("location", "")))
            start, end = int(ev.get("start", -1)), int(ev.get("end", -1))
            if key is None or start < 0 or end <= start:
                continue
            out.setdefault(key, []).append(Mark(start, end, f"{source}: {ev.get('kind', '')}", kind))

    for d in decisions:
        add(str(d.get("policy", "")), "policy", d.get("evidence") or [])
    for name, s in (signals or {}).items():
        if isinstance(s, Mapping):
            add(str(name), "detector", s.get("evidence") or [])
    return out


def placeholder_marks(text: str) -> list[Mark]:
    """A mark on every redaction placeholder in ``text``."""
    return [
        Mark(m.start(), m.end(), f"redacted: {m.group(0)[1:-1]}", "placeholder")
        for m in PLACEHOLDER.finditer(text)
    ]


def segments(text: str, marks: Sequence[Mark]) -> list[Segment]:
    """Split ``text`` at every mark boundary (marks clipped to the text; overlaps keep all
    labels). Joining the segments' text gives ``text`` back."""
    n = len(text)
    clipped = [m for m in marks if 0 <= m.start < n and m.end > m.start]
    cuts = {0, n}
    for m in clipped:
        cuts.add(m.start)
        cuts.add(min(m.end, n))
    bounds = sorted(cuts)
    out: list[Segment] = []
    for a, b in itertools.pairwise(bounds):
        if a >= b:
            continue
        cover = [m for m in clipped if m.start <= a and min(m.end, n) >= b]
        labels = tuple(dict.fromkeys(m.label for m in cover))
        kinds = tuple(dict.fromkeys(m.kind for m in cover))
        out.append(Segment(text[a:b], labels, kinds))
    return out


def highlight_conversation(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The conversation of an item payload as ``{"messages": [{"role", "segments"}],
    "completion": [segments] | None}`` with evidence and placeholders marked."""
    marks = marks_by_location(payload.get("decisions") or [], payload.get("signals") or {})
    messages = []
    for i, msg in enumerate(payload.get("messages") or []):
        text = text_of(msg.get("content"))
        ms = [*marks.get(f"m{i}", []), *placeholder_marks(text)]
        messages.append({"role": msg.get("role", ""), "segments": segments(text, ms)})
    completion = payload.get("completion")
    comp = None
    if isinstance(completion, str):
        comp = segments(completion, [*marks.get("completion", []), *placeholder_marks(completion)])
    return {"messages": messages, "completion": comp}


def last_user_text(record: Mapping[str, Any]) -> str:
    """The text of the last ``user`` message of a record (empty when none)."""
    for msg in reversed(record.get("messages") or []):
        if msg.get("role") == "user":
            return text_of(msg.get("content"))
    return ""


def _words(text: str) -> frozenset[str]:
    return frozenset(w.lower() for w in _WORD.findall(text))


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the lower-cased word sets, in [0, 1] (1.0 for identical prompts)."""
    if a == b:
        return 1.0
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def nearest_pair(
    canary: Sequence[Mapping[str, Any]], control: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The canary and control records whose last user prompts are most alike (same prompt first):
    ``{"similarity", "canary", "control"}`` or None when a side is empty. O(len(canary) x
    len(control)) on exemplar lists (tens of records)."""
    best: tuple[float, int, int] | None = None
    for i, a in enumerate(canary):
        ta = last_user_text(a)
        for j, b in enumerate(control):
            s = similarity(ta, last_user_text(b))
            if best is None or s > best[0]:
                best = (s, i, j)
    if best is None:
        return None
    s, i, j = best
    return {"similarity": round(s, 4), "canary": dict(canary[i]), "control": dict(control[j])}
