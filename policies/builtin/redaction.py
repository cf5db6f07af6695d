"""Shared machinery of the span-finding transforms (``pii``, ``secrets``): spans, overlap
resolution, placeholder substitution through the request's ``RedactionVault``, evidence, and the
stage logic (request messages on ``pre_call``; completion text and tool calls on ``post_call`` and
``stream``).

A policy supplies a ``Finder``: ``text -> list[Span]`` (any order, may overlap). Evidence names the
kind, location and offsets, never the matched value.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from policies.base import CheckContext, PolicyResult, RedactionVault
from policies.builtin.locations import TextSite, rewrite_messages, rewrite_text, rewrite_tool_calls
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


def resolve_overlaps(spans: list[Span]) -> list[Span]:
    """Non-overlapping spans sorted by start: on overlap the lower ``priority`` wins, then the
    longer span, then the earlier one."""
    if len(spans) <= 1:
        return spans
    ranked = sorted(spans, key=lambda s: (s.priority, -(s.end - s.start), s.start))
    kept: list[Span] = []
    for s in ranked:
        if all(s.end <= k.start or s.start >= k.end for k in kept):
            kept.append(s)
    kept.sort(key=lambda s: s.start)
    return kept


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


def run_span_policy(
    ctx: CheckContext, finder: Finder, *, action: Action, roles: Collection[str] | None
) -> PolicyResult:
    """Apply ``finder`` to the texts of ``ctx`` for its stage and turn the findings into a result.

    ``pre_call``: every message of the selected ``roles`` (history included). ``post_call`` /
    ``stream``: ``ctx.completion`` and ``ctx.completion_tool_calls`` (roles do not apply).
    Verdict: ``redact`` (with rewritten content), ``block`` or ``flag`` per ``action``; ``allow``
    with score 0.0 when nothing was found, else score 1.0.
    """
    collector = _Collector(finder, ctx.vault, redact=action is Action.REDACT)
    new_messages = None
    new_completion = None
    new_calls = None
    if ctx.stage is Stage.PRE_CALL:
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
