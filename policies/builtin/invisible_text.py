"""The ``invisible_text`` policy: Unicode tag characters (U+E0000-U+E007F) are a finding of their
own. Many renderers show nothing for them while many models read them as the ASCII they shadow,
so a question can carry an invisible second message that overrides it ("ASCII smuggling").

Actions (configurable): ``strip`` the tag characters before the request goes upstream, ``flag``
the request for review, ``block`` it. Default: strip + flag. Independently, the pipeline scores
the hidden text as a decoded view with every other policy (``policies.pipeline``), so a hidden
override is blocked by ``prompt_injection`` even when this policy only strips.

Other invisible characters (zero-width spaces, bidi controls) are counted in the evidence and
stripped only with ``strip_other`` (they are legitimate in emoji sequences and several scripts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from policies.base import CheckContext, Execution, PolicyResult
from policies.builtin.locations import TextSite, iter_message_texts, rewrite_messages, rewrite_text
from policies.builtin.normalize import invisible_counts, strip_invisible
from policies.registry import register
from rollguard.types import Evidence, Stage, Verdict

__all__ = ["InvisibleTextPolicy"]

_ACTIONS = ("strip", "flag", "block")


@register
class InvisibleTextPolicy:
    """Params: ``actions`` (a non-empty subset of ``strip``, ``flag``, ``block``; default
    ``["strip", "flag"]``), ``strip_other`` (default False: also strip zero-width and bidi
    characters when stripping), ``min_tags`` (tag characters needed for a finding, default 1).

    Stages: ``pre_call`` (message texts) and ``post_call`` / ``stream`` (completion). A transform
    (it rewrites content when stripping), inline. Raises ``ValueError`` for bad params. Verdict:
    ``block`` / ``flag`` / ``redact`` (strip only) / ``allow``; evidence names the location and the
    count, never the hidden text.
    """

    type_name: ClassVar[str] = "invisible_text"
    stages = frozenset({Stage.PRE_CALL, Stage.POST_CALL, Stage.STREAM})
    transforms = True
    execution = Execution.INLINE

    def __init__(
        self, *, actions: Iterable[str] | None = None, strip_other: bool = False, min_tags: int = 1
    ) -> None:
        chosen = ("strip", "flag") if actions is None else tuple(actions)
        if isinstance(actions, str) or not chosen or set(chosen) - set(_ACTIONS):
            raise ValueError(f"actions must be a non-empty list from {list(_ACTIONS)}, got {actions!r}")
        self.actions = frozenset(chosen)
        if not isinstance(strip_other, bool):
            raise ValueError(f"strip_other must be true or false, got {strip_other!r}")
        self.strip_other = strip_other
        if isinstance(min_tags, bool) or not isinstance(min_tags, int) or min_tags < 1:
            raise ValueError(f"min_tags must be an integer >= 1, got {min_tags!r}")
        self.min_tags = min_tags

    def check(self, ctx: CheckContext) -> PolicyResult:
        """Count tag characters in every text of the stage; act per ``actions`` when any text
        holds ``min_tags`` or more. O(total characters)."""
        evidence: list[Evidence] = []
        if ctx.stage is Stage.PRE_CALL:
            sites = list(iter_message_texts(ctx.messages, start=ctx.turn_start))
        else:
            sites = [(TextSite("completion", "assistant"), ctx.completion or "")]
        for site, text in sites:
            tags, other = invisible_counts(text)
            if tags >= self.min_tags:
                evidence.append(Evidence("unicode_tags", site.location, detail=f"tags={tags} other={other}"))
        if not evidence:
            return PolicyResult.allow("no tag characters")
        where = (
            evidence[0].location
            if len(evidence) == 1
            else f"{evidence[0].location} and {len(evidence) - 1} more"
        )
        if "block" in self.actions:
            return PolicyResult(
                Verdict.BLOCK, 1.0, f"invisible Unicode tag characters ({where})", tuple(evidence)
            )
        verdict = Verdict.FLAG if "flag" in self.actions else Verdict.REDACT
        if "strip" not in self.actions:
            return PolicyResult(verdict, 1.0, f"invisible Unicode tag characters ({where})", tuple(evidence))
        return self._stripped(ctx, verdict, where, tuple(evidence))

    def _stripped(
        self, ctx: CheckContext, verdict: Verdict, where: str, evidence: tuple[Evidence, ...]
    ) -> PolicyResult:
        def strip(_: TextSite, text: str) -> str:
            return strip_invisible(text, tags=True, other=self.strip_other)

        reason = f"stripped invisible Unicode tag characters ({where})"
        if ctx.stage is Stage.PRE_CALL:
            messages = rewrite_messages(ctx.messages, strip)
            return PolicyResult(verdict, 1.0, reason, evidence, messages=messages)
        completion = rewrite_text(TextSite("completion", "assistant"), ctx.completion or "", strip)
        return PolicyResult(verdict, 1.0, reason, evidence, completion=completion)

    def describe(self) -> Mapping[str, Any]:
        return {"actions": sorted(self.actions), "strip_other": self.strip_other, "min_tags": self.min_tags}
