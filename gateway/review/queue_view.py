"""The queue page's rows: a redacted snippet, the policies / detectors that raised the item, its
age and severity, with server-side filters (detector or policy, state) and sorts (age, severity).

Pure functions of the items (no I/O). A snippet is built from the item's payload, which is the
audit record (already redacted unless the tenant opted in to raw content, ``tenants.<t>.
raw_content_opt_in``) or the anomaly summary; it is passed through the gateway's privacy redaction
(``gateway.review.privacy.ReviewerTextRedactor.redact_always``) before it is cut, so a list page
never shows unredacted PII, whatever the tenant's consent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from gateway.review.items import ReviewItem
from rollguard.errors import InvalidRequest

SNIPPET_CHARS = 160
"""Characters of the snippet shown per row (after redaction; longer text ends with ``…``)."""

SCAN_CHARS = 2000
"""Characters of the source text redacted before the snippet is cut (bounds the scan cost)."""

SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
"""Order of an anomaly's severity (unknown or none: after ``low``)."""


class State(StrEnum):
    """The queue page's state filter."""

    ALL = "all"
    UNCLAIMED = "unclaimed"
    CLAIMED = "claimed"
    MINE = "mine"
    LATE = "late"


class Sort(StrEnum):
    """The queue page's sort orders: oldest first (the default), newest first, most severe first
    (priority, then an anomaly's severity, then oldest)."""

    OLDEST = "oldest"
    NEWEST = "newest"
    SEVERITY = "severity"


DETECTOR_CHARS = 128
"""Longest policy / detector name a filter carries (longer: cut; no name is that long)."""


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """The queue page's filters and sort as the reviewer set them: the page lists the items they
    keep, and "claim next" claims only among those (``ReviewService.claim(only=...)``), so the
    next item matches what the reviewer is looking at."""

    detector: str = ""
    state: State = State.ALL
    sort: Sort = Sort.OLDEST

    @classmethod
    def parse(cls, values: Mapping[str, Sequence[str]]) -> QueueFilter:
        """From a form or query (``parse_qs`` output: name -> values, the first used). Raises
        ``InvalidRequest`` (400) for a ``state`` or ``sort`` outside ``State`` / ``Sort``."""

        def first(name: str) -> str:
            return (values.get(name) or [""])[0]

        try:
            state = State(first("state") or State.ALL)
            sort = Sort(first("sort") or Sort.OLDEST)
        except ValueError as exc:
            raise InvalidRequest("unknown queue filter: state or sort", param="state") from exc
        return cls(first("detector")[:DETECTOR_CHARS], state, sort)

    @property
    def active(self) -> bool:
        """Whether the filter keeps less than every open item (the sort alone does not)."""
        return bool(self.detector) or self.state is not State.ALL

    def query(self) -> str:
        """The filter as URL query parameters (``detector=pii&state=unclaimed``; defaults left
        out, empty when none), to carry it from page to page."""
        pairs = [("detector", self.detector), ("state", self.state.value), ("sort", self.sort.value)]
        defaults = {"detector": "", "state": State.ALL.value, "sort": Sort.OLDEST.value}
        return urlencode([(k, v) for k, v in pairs if v != defaults[k]])

    def matching(self, items: Iterable[ReviewItem], viewer: str, now_ms: int) -> list[str]:
        """Ids of the ``items`` this filter keeps for ``viewer`` (a reviewer name) at ``now_ms``
        (UTC epoch ms), in the page's order."""
        rows = queue_rows(
            list(items),
            viewer=viewer,
            now_ms=now_ms,
            redact=str,  # not called: no snippets
            detector=self.detector,
            state=self.state,
            sort=self.sort,
            snippets=False,
        )
        return [r.item.id for r in rows]


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One row of the queue page: the item, its redacted ``snippet`` (at most ``SNIPPET_CHARS``
    characters), its ``severity`` (an anomaly's, else None), ``age_ms`` and whether the viewer
    holds a lease on it (``mine``)."""

    item: ReviewItem
    snippet: str
    severity: str | None
    age_ms: int
    mine: bool


def _text_of(content: Any) -> str:
    """The text of a message's ``content``: a string, or the ``text`` parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def _last_user_text(messages: Iterable[Any]) -> str:
    for m in reversed(list(messages or [])):
        if isinstance(m, Mapping) and m.get("role") == "user":
            return _text_of(m.get("content"))
    return ""


def snippet_source(payload: Mapping[str, Any]) -> str:
    """The unredacted source of a snippet: an interaction's last user message (else its
    completion); an anomaly's metric, value and threshold, then the canary's prompt when the item
    carries a canary/control comparison."""
    if payload.get("kind") == "anomaly":
        a = payload.get("anomaly") or {}
        head = str(a.get("metric") or a.get("statistic") or a.get("detector") or "anomaly")
        if a.get("value") is not None and a.get("threshold") is not None:
            head += f" {a['value']} vs threshold {a['threshold']}"
        comparison = payload.get("comparison") or {}
        canary = comparison.get("canary") if isinstance(comparison, Mapping) else None
        prompt = _last_user_text(canary.get("messages") or []) if isinstance(canary, Mapping) else ""
        return f"{head} · canary prompt: {prompt}" if prompt else head
    text = _last_user_text(payload.get("messages") or [])
    return text or _text_of(payload.get("completion"))


def snippet(payload: Mapping[str, Any], redact: Callable[[str], str]) -> str:
    """The row's snippet: ``snippet_source`` (its first ``SCAN_CHARS`` characters) through
    ``redact``, whitespace collapsed, cut to ``SNIPPET_CHARS`` characters."""
    text = " ".join(redact(snippet_source(payload)[:SCAN_CHARS]).split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"


def severity_of(item: ReviewItem) -> str | None:
    """An anomaly item's severity (lower case), else None."""
    a = item.payload.get("anomaly")
    sev = a.get("severity") if isinstance(a, Mapping) else None
    return str(sev).lower() if sev else None


def _keep(item: ReviewItem, viewer: str, now_ms: int, detector: str, state: State) -> bool:
    if detector and detector not in item.detectors:
        return False
    claimed = bool(item.leases)
    return {
        State.ALL: True,
        State.UNCLAIMED: not claimed,
        State.CLAIMED: claimed,
        State.MINE: viewer in item.leases.values(),
        State.LATE: item.decide_by_ms < now_ms or (not claimed and item.claim_by_ms < now_ms),
    }[state]


def queue_rows(
    items: Sequence[ReviewItem],
    *,
    viewer: str,
    now_ms: int,
    redact: Callable[[str], str],
    detector: str = "",
    state: State = State.ALL,
    sort: Sort = Sort.OLDEST,
    snippets: bool = True,
) -> list[QueueRow]:
    """The rows of the queue page for ``viewer`` (a reviewer name) at ``now_ms`` (UTC epoch ms):
    items raised by ``detector`` (a policy or detector id; empty: any) in ``state``, sorted.
    ``snippets=False``: every snippet left empty (no text read or redacted)."""
    kept = [it for it in items if _keep(it, viewer, now_ms, detector, state)]
    if sort is Sort.SEVERITY:
        kept.sort(
            key=lambda it: (it.priority.value, SEVERITY_RANK.get(severity_of(it) or "", 9), it.created_ms)
        )
    else:
        kept.sort(key=lambda it: it.created_ms, reverse=sort is Sort.NEWEST)
    return [
        QueueRow(
            item=it,
            snippet=snippet(it.payload, redact) if snippets else "",
            severity=severity_of(it),
            age_ms=max(0, now_ms - it.created_ms),
            mine=viewer in it.leases.values(),
        )
        for it in kept
    ]


def detector_choices(items: Iterable[ReviewItem]) -> list[str]:
    """The policies and detectors that raised any of ``items`` (the filter's options), sorted."""
    return sorted({d for it in items for d in it.detectors})
