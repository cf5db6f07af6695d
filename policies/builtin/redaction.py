"""Shared machinery of the span-finding transforms (``pii``, ``secrets``): spans, overlap
resolution, placeholder substitution through the request's ``RedactionVault``, evidence, and the
stage logic (request messages on ``pre_call``; completion text and tool calls on ``post_call`` and
``stream``).

A policy supplies a ``Finder``: ``text -> list[Span]`` (any order, may overlap). Evidence names the
kind, location and offsets, never the matched value.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from policies.base import CheckContext, PolicyResult, RedactionVault
from policies.builtin.locations import (
    TextSite,
    message_texts,
    rewrite_messages,
    rewrite_text,
    rewrite_tool_calls,
)
from policies.score_cache import ScoreCache
from rollguard.types import Evidence, Stage, Verdict

ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant", "tool")
"""Every message role a span policy can scan."""


def parse_roles(roles: object, default: tuple[str, ...]) -> frozenset[str]:
    """The ``roles`` param of a span policy: a list of names from ``ROLES`` (``default`` when
    None). Raises ``ValueError`` for a bare string or an unknown role."""
    if roles is None:
        return frozenset(default)
    if isinstance(roles, str) or not isinstance(roles, Collection):
        raise ValueError("roles must be a list of role names")
    chosen = tuple(str(r) for r in roles)
    bad = sorted(set(chosen) - set(ROLES))
    if bad:
        raise ValueError(f"unknown roles {bad}; allowed: {list(ROLES)}")
    return frozenset(chosen)


@dataclass(frozen=True, slots=True)
class Span:
    """A finding in one text: entity ``kind`` (``EMAIL_ADDRESS``) and character offsets
    ``[start, end)``. ``priority``: lower wins when two findings overlap."""

    kind: str
    start: int
    end: int
    priority: int = 100


Finder = Callable[[str], list[Span]]

MESSAGE_SPANS: ScoreCache[tuple[Span, ...]] = ScoreCache(max_entries=8192, max_items=64)
"""The process-wide cache of the spans found in request message texts (``pre_call`` only: the
history and system prompt re-sent with every turn), shared by the ``pii`` / ``secrets`` policies
and the audit record's redaction, keyed by each finder's namespace (its kind and configuration).
At most 8,192 texts with at most 64 findings each; completions are never cached (a new reply is
new text)."""


class CachedFinder:
    """``finder`` with its non-overlapping spans (``resolve_overlaps``) remembered per text in
    ``cache`` (default ``MESSAGE_SPANS``) under ``namespace``, which must change whenever what
    ``finder`` finds changes. A ``Finder``; picklable (the default cache is the receiving
    process's own ``MESSAGE_SPANS``)."""

    def __init__(
        self, finder: Finder, namespace: str, cache: ScoreCache[tuple[Span, ...]] | None = None
    ) -> None:
        self.finder = finder
        self.namespace = namespace
        self.cache = cache

    def _compute(self, text: str) -> tuple[Span, ...]:
        return tuple(resolve_overlaps(self.finder(text)))

    def __call__(self, text: str) -> list[Span]:
        cache = self.cache if self.cache is not None else MESSAGE_SPANS
        return list(cache.get_or_compute(self.namespace, text, self._compute))


def cached_finder(
    finder: Finder, namespace: str, cache: ScoreCache[tuple[Span, ...]] | None = None
) -> Finder:
    """``CachedFinder(finder, namespace, cache)``."""
    return CachedFinder(finder, namespace, cache)


class Action(enum.StrEnum):
    """What a span-finding policy does with a finding."""

    REDACT = "redact"
    BLOCK = "block"
    FLAG = "flag"

    @classmethod
    def parse(cls, value: object, param: str = "action") -> Action:
        """``Action`` from a config value; raises ``ValueError`` naming ``param`` otherwise."""
        try:
            return cls(str(value))
        except ValueError:
            raise ValueError(f"{param} must be one of {[a.value for a in cls]}, got {value!r}") from None


def _rank(s: Span) -> tuple[int, int, int]:
    return (s.priority, s.start - s.end, s.start)


def resolve_overlaps(spans: list[Span]) -> list[Span]:
    """Non-overlapping spans sorted by start: on overlap the lower ``priority`` wins, then the
    longer span, then the earlier one (then the one listed first). Zero-width spans are dropped.

    The result is the greedy one (take spans in that rank order, keep each that overlaps nothing
    kept), computed in O(n log n) for n spans: a sweep in start order splits the spans into
    groups that chain-overlap (spans in different groups cannot overlap, so each group is resolved
    on its own); a lone span is kept as it is, and a larger group runs the greedy with
    ``_GreedyResolver``.
    """
    if len(spans) <= 1:
        return [s for s in spans if s.end > s.start]
    by_start = sorted((s for s in spans if s.end > s.start), key=lambda s: s.start)
    kept: list[Span] = []
    group: list[Span] = []
    group_end = -1
    for s in by_start:
        if s.start >= group_end and group:
            kept.extend(_resolve_group(group))
            group = []
        group.append(s)
        group_end = max(group_end, s.end) if len(group) > 1 else s.end
    if group:
        kept.extend(_resolve_group(group))
    return kept


_SMALL_GROUP = 16
"""Groups up to this size are resolved by direct pairwise tests (cheaper than the index)."""


def _resolve_group(group: list[Span]) -> list[Span]:
    """The greedy resolution of one chain-overlapping ``group`` (sorted by start), by start."""
    if len(group) == 1:
        return group
    ranked = sorted(group, key=_rank)
    if len(group) <= _SMALL_GROUP:
        kept: list[Span] = []
        for s in ranked:
            if all(s.end <= k.start or s.start >= k.end for k in kept):
                kept.append(s)
    else:
        resolver = _GreedyResolver([s.start for s in group])
        kept = [s for s in ranked if resolver.try_keep(s.start, s.end)]
    kept.sort(key=lambda s: s.start)
    return kept


class _GreedyResolver:
    """Kept (pairwise disjoint, non-empty) intervals over a fixed set of possible start offsets,
    with an O(log n) test-and-insert: a Fenwick tree counts kept starts per start offset.

    ``[s, e)`` overlaps a kept ``[a, b)`` iff some kept start lies in ``[s, e)``, or the kept
    interval with the last start before ``s`` ends after ``s`` (kept intervals are disjoint).
    """

    def __init__(self, starts: list[int]) -> None:
        self._starts = sorted(set(starts))
        self._size = len(self._starts)
        self._tree = [0] * (self._size + 1)
        self._end = [0] * self._size
        self._top = 1 << self._size.bit_length()

    def _count_before(self, i: int) -> int:
        """Kept starts among ``_starts[:i]``."""
        total = 0
        while i > 0:
            total += self._tree[i]
            i &= i - 1
        return total

    def _kth(self, k: int) -> int:
        """Index into ``_starts`` of the ``k``-th kept start (1-based; ``k`` <= kept count)."""
        pos = 0
        step = self._top
        while step:
            nxt = pos + step
            if nxt <= self._size and self._tree[nxt] < k:
                pos = nxt
                k -= self._tree[nxt]
            step >>= 1
        return pos

    def try_keep(self, start: int, end: int) -> bool:
        """Keep ``[start, end)`` (``start`` one of the offsets given) unless it overlaps a kept
        interval; True when kept."""
        lo = bisect_left(self._starts, start)
        before = self._count_before(lo)
        if self._count_before(bisect_left(self._starts, end, lo)) > before:
            return False
        if before and self._end[self._kth(before)] > start:
            return False
        self._end[lo] = end
        i = lo + 1
        while i <= self._size:
            self._tree[i] += 1
            i += i & -i
        return True


def substitute(text: str, spans: list[Span], vault: RedactionVault) -> str:
    """``text`` with each (non-overlapping, sorted) span replaced by ``vault.placeholder``."""
    out: list[str] = []
    pos = 0
    for s in spans:
        out.append(text[pos : s.start])
        out.append(vault.placeholder(s.kind, text[s.start : s.end]))
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


@dataclass(slots=True)
class _Collector:
    """A ``Rewrite`` that finds spans, records evidence and (when redacting) substitutes."""

    finder: Finder
    vault: RedactionVault
    redact: bool
    evidence: list[Evidence] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def __call__(self, site: TextSite, text: str) -> str | None:
        spans = resolve_overlaps(self.finder(text))
        if not spans:
            return None
        detail = f"json {site.json_path}" if site.json_path else ""
        for s in spans:
            self.evidence.append(Evidence(s.kind, site.location, s.start, s.end, detail))
            self.counts[s.kind] += 1
        return substitute(text, spans, self.vault) if self.redact else None


def summary(counts: Counter[str]) -> str:
    """``"2 EMAIL_ADDRESS, 1 CREDIT_CARD"`` (most frequent first, then by name)."""
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def reserve_lookalikes(ctx: CheckContext) -> None:
    """Reserve in ``ctx.vault`` every placeholder-shaped string already present in the texts this
    stage can rewrite (``RedactionVault.reserve``), before any placeholder is issued: every message
    text of any role on ``pre_call``; the completion and its tool-call arguments on ``post_call`` /
    ``stream``. Linear in the text length."""
    vault = ctx.vault
    if ctx.stage is Stage.PRE_CALL:
        for text in message_texts(ctx.messages):
            vault.reserve(text)
        return
    if ctx.completion:
        vault.reserve(ctx.completion)
    for call in ctx.completion_tool_calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            vault.reserve(fn["arguments"])


def run_span_policy(
    ctx: CheckContext,
    finder: Finder,
    *,
    action: Action,
    roles: Collection[str] | None,
    message_finder: Finder | None = None,
) -> PolicyResult:
    """Apply ``finder`` to the texts of ``ctx`` for its stage and turn the findings into a result.

    ``pre_call``: every message of the selected ``roles`` (history included). ``post_call`` /
    ``stream``: ``ctx.completion`` and ``ctx.completion_tool_calls`` (roles do not apply).
    Verdict: ``redact`` (with rewritten content), ``block`` or ``flag`` per ``action``; ``allow``
    with score 0.0 when nothing was found, else score 1.0. When redacting, look-alike placeholders
    already in the texts are reserved first (``reserve_lookalikes``). O(L + n log n) for L
    characters and n findings. ``message_finder`` (e.g. a ``cached_finder`` of ``finder``) is used
    for the messages on ``pre_call`` instead of ``finder``.
    """
    pre_call = ctx.stage is Stage.PRE_CALL
    use = message_finder if pre_call and message_finder is not None else finder
    collector = _Collector(use, ctx.vault, redact=action is Action.REDACT)
    if action is Action.REDACT:
        reserve_lookalikes(ctx)
    new_messages = None
    new_completion = None
    new_calls = None
    if pre_call:
        new_messages = rewrite_messages(ctx.messages, collector, roles=roles)
    else:
        if ctx.completion:
            new_completion = rewrite_text(TextSite("completion", "assistant"), ctx.completion, collector)
        if ctx.completion_tool_calls:
            new_calls = rewrite_tool_calls(ctx.completion_tool_calls, collector)
    if not collector.counts:
        return PolicyResult.allow()
    found = summary(collector.counts)
    evidence = tuple(collector.evidence)
    if action is Action.REDACT:
        return PolicyResult(
            Verdict.REDACT,
            1.0,
            f"redacted {found}",
            evidence,
            messages=new_messages,
            completion=new_completion,
            completion_tool_calls=new_calls,
        )
    verdict = Verdict.BLOCK if action is Action.BLOCK else Verdict.FLAG
    return PolicyResult(verdict, 1.0, f"found {found}", evidence)
