"""``system_prompt_leak``: block (or flag) a completion that reproduces the operator's system prompt
(``CheckContext.system_prompt()``: every ``system``/``developer`` message) or contains a configured
canary token.

Method: word n-gram shingling (Broder 1997, "On the resemblance and containment of documents").
Both texts are lower-cased and split into words (``\\w+``); the system prompt's set of word
``ngram``-grams (default 8) is built once per distinct prompt (small LRU cache). The completion
leaks when either

- *containment*: the share of the prompt's distinct n-grams that also occur in the completion is
  ``>= threshold`` (default 0.5: half of the instructions reproduced verbatim), or
- *verbatim run*: the longest run of consecutive completion words that is a run of prompt words is
  ``>= min_run_words`` (default 25 words), which catches a partial leak and leaks inside a stream
  window that holds only part of the reply.

Only prompts of at least ``min_prompt_words`` words (default 20) are compared: a shorter prompt
("You are a helpful assistant.") is generic, and repeating it reveals nothing. Canary tokens
(``canaries``, each at least 8 characters) are matched verbatim (case-sensitive) whatever the prompt
length. Score: ``max(containment, run / min_run_words)`` capped at 1.0; 1.0 for a canary.

Known trade-off: a system prompt that embeds reference documents (RAG context) makes legitimate
verbatim quotes of 25+ words look like a leak; raise ``min_run_words`` (or set it to 0 to use the
containment rule alone) for such deployments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from policies.base import CheckContext, Execution, PolicyResult
from policies.registry import register
from rollguard.types import Evidence, Stage, Verdict

_WORD = re.compile(r"\w+")

MIN_CANARY_CHARS = 8


@dataclass(frozen=True, slots=True)
class _Prompt:
    words: int
    shingles: frozenset[int]
    firsts: frozenset[str]
    """The first words of the shingles: a text window whose first word is not among them cannot
    match, so it is skipped without building and hashing its tuple (most windows of a reply)."""


@lru_cache(maxsize=128)
def _prompt_shingles(prompt: str, n: int) -> _Prompt:
    words = _WORD.findall(prompt.lower())
    starts = range(len(words) - n + 1)
    return _Prompt(
        len(words),
        frozenset(hash(tuple(words[i : i + n])) for i in starts),
        frozenset(words[i] for i in starts),
    )


@dataclass(frozen=True, slots=True)
class Overlap:
    """How much of the prompt a text reproduces: ``containment`` in [0, 1], ``run_words`` the
    longest verbatim run in words, ``start``/``end`` its character offsets in the text."""

    containment: float
    run_words: int
    start: int
    end: int


def overlap(prompt: str, text: str, n: int = 8) -> Overlap:
    """Word ``n``-gram overlap of ``text`` with ``prompt`` (see the module docstring)."""
    ref = _prompt_shingles(prompt, n)
    if text.isascii():  # lower-casing ASCII keeps every character (and word) where it is
        words = _WORD.findall(text.lower())
    else:
        words = [m.group().lower() for m in _WORD.finditer(text)]
    if not ref.shingles or len(words) < n:
        return Overlap(0.0, 0, -1, -1)
    seen: set[int] = set()
    best_len = 0
    best_end = -1
    run = 0
    firsts = ref.firsts
    for i in range(len(words) - n + 1):
        if words[i] not in firsts:
            run = 0
            continue
        h = hash(tuple(words[i : i + n]))
        if h in ref.shingles:
            seen.add(h)
            run += 1
            if run > best_len:
                best_len, best_end = run, i
        else:
            run = 0
    if not best_len:
        return Overlap(0.0, 0, -1, -1)
    first = best_end - best_len + 1
    last = best_end + n - 1
    matches = list(_WORD.finditer(text))  # the run's character offsets (only for a match)
    return Overlap(
        len(seen) / len(ref.shingles), best_len + n - 1, matches[first].start(), matches[last].end()
    )


def _texts(ctx: CheckContext) -> Iterator[tuple[str, str]]:
    if ctx.completion:
        yield "completion", ctx.completion
    for k, call in enumerate(ctx.completion_tool_calls):
        fn = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(fn, Mapping) and isinstance(fn.get("arguments"), str) and fn["arguments"]:
            yield f"completion_tool_calls[{k}].function.arguments", fn["arguments"]


@register
class SystemPromptLeakPolicy:
    """Params: ``action`` (``block`` | ``flag``, default ``block``), ``ngram`` (words per shingle,
    default 8), ``threshold`` (containment in (0, 1], default 0.5), ``min_run_words`` (default 25;
    0 disables the run rule), ``min_prompt_words`` (default 20), ``canaries`` (list of strings,
    each >= 8 characters, default none). Raises ``ValueError`` for bad params.

    Stages: ``post_call`` and ``stream`` (read-only).
    """

    type_name: ClassVar[str] = "system_prompt_leak"
    stages = frozenset({Stage.POST_CALL, Stage.STREAM})
    transforms = False
    execution = Execution.INLINE

    def __init__(
        self,
        *,
        action: str = "block",
        ngram: int = 8,
        threshold: float = 0.5,
        min_run_words: int = 25,
        min_prompt_words: int = 20,
        canaries: Iterable[str] | None = None,
    ) -> None:
        if action not in ("block", "flag"):
            raise ValueError(f"action must be 'block' or 'flag', got {action!r}")
        self.verdict = Verdict(action)
        if not isinstance(ngram, int) or isinstance(ngram, bool) or not 3 <= ngram <= 32:
            raise ValueError(f"ngram must be an integer in 3..32, got {ngram!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        for name, value in (("min_run_words", min_run_words), ("min_prompt_words", min_prompt_words)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if 0 < min_run_words < ngram:
            raise ValueError(f"min_run_words ({min_run_words}) must be 0 or >= ngram ({ngram})")
        if isinstance(canaries, str):
            raise ValueError("canaries must be a list of strings")
        chosen = tuple(canaries or ())
        for c in chosen:
            if not isinstance(c, str) or len(c) < MIN_CANARY_CHARS:
                raise ValueError(f"each canary must be a string of at least {MIN_CANARY_CHARS} characters")
        self.ngram = ngram
        self.threshold = float(threshold)
        self.min_run_words = min_run_words
        self.min_prompt_words = max(min_prompt_words, ngram)
        self.canaries = chosen

    def check(self, ctx: CheckContext) -> PolicyResult:
        """Compare the completion (and its tool-call arguments) with the system prompt and the
        canaries; never echoes either in the reason or evidence."""
        evidence: list[Evidence] = []
        for location, text in _texts(ctx):
            for idx, canary in enumerate(self.canaries):
                pos = text.find(canary)
                if pos >= 0:
                    evidence.append(
                        Evidence("canary", location, pos, pos + len(canary), f"canary #{idx + 1}")
                    )
        if evidence:
            return PolicyResult(
                self.verdict,
                1.0,
                f"completion contains canary token ({len(evidence)} hit(s))",
                tuple(evidence),
            )
        prompt = ctx.system_prompt()
        if not prompt or _prompt_shingles(prompt, self.ngram).words < self.min_prompt_words:
            return PolicyResult.allow("no system prompt long enough to leak")
        best: tuple[float, str, Overlap] | None = None
        for location, text in _texts(ctx):
            ov = overlap(prompt, text, self.ngram)
            run_score = ov.run_words / self.min_run_words if self.min_run_words else 0.0
            score = min(1.0, max(ov.containment, run_score))
            if best is None or score > best[0]:
                best = (score, location, ov)
        if best is None:
            return PolicyResult.allow("no completion text")
        score, location, ov = best
        leaked = ov.containment >= self.threshold or (0 < self.min_run_words <= ov.run_words)
        detail = f"containment={ov.containment:.2f} run_words={ov.run_words}"
        if not leaked:
            return PolicyResult.allow(f"no system prompt reproduction ({detail})", score)
        reason = (
            f"completion reproduces the system prompt: {ov.containment:.0%} of its {self.ngram}-grams, "
            f"longest verbatim run {ov.run_words} words"
        )
        return PolicyResult(
            self.verdict, score, reason, (Evidence("system_prompt", location, ov.start, ov.end, detail),)
        )

    def describe(self) -> Mapping[str, Any]:
        return {
            "action": self.verdict.value,
            "ngram": self.ngram,
            "threshold": self.threshold,
            "min_run_words": self.min_run_words,
            "min_prompt_words": self.min_prompt_words,
            "canaries": len(self.canaries),  # how many, never the tokens
        }
