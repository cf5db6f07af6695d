"""The ``content_safety`` policy: harmful requests and harmful content by hazard category, named
after the MLCommons hazard taxonomy that Llama Guard 3 uses (Inan et al. 2023; Llama Guard 3 model
card: S1 violent crimes .. S14 code interpreter abuse).

Three detectors:

- a request model (``policies.builtin.content_safety_model``: TF-IDF word 1-2-grams, logistic
  regression, trained by ``bench/train_content_safety.py`` on the shipped harmful / benign sets)
  gives P(harmful request) and the most likely category; applied to the current turn's user
  messages at ``pre_call`` (and to replies only with ``score_outputs``);
- a slur lexicon (S10) and a minors + sexual-content rule (S4)
  (``policies.builtin.content_lexicon``), applied to inputs and outputs, streams included: on a
  stream the hold-back window is checked before any of it is released, so a blocked reply leaks
  no chunk of the matched text.

Each category has its action per direction; the defaults follow issue 9: outputs with slurs or
sexual content involving minors are blocked, harmful requests are flagged (the model can decline
and the review queue sees it). Reasons and evidence name the category and score, never the text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, ClassVar

from policies.base import CheckContext, Execution, PolicyResult
from policies.builtin.content_lexicon import Lexicon
from policies.builtin.content_safety_model import ContentSafetyModel
from policies.builtin.locations import iter_message_texts
from policies.builtin.prompt_injection import fold_placeholders
from policies.registry import register
from rollguard.types import Evidence, Stage, Verdict

__all__ = ["CATEGORIES", "DEFAULT_MODEL", "ContentSafetyPolicy"]

DEFAULT_MODEL = resources.files("policies") / "data" / "content_safety.model.json"
"""The shipped model file (package data, read with ``importlib.resources``)."""

CATEGORIES: Mapping[str, str] = {
    "S1": "violent crimes",
    "S2": "non-violent crimes",
    "S3": "sex-related crimes",
    "S4": "child sexual exploitation",
    "S5": "defamation and disinformation",
    "S6": "specialized advice",
    "S7": "privacy",
    "S8": "intellectual property",
    "S9": "indiscriminate weapons (CBRNE)",
    "S10": "hate",
    "S11": "suicide and self-harm",
    "S12": "sexual content",
    "S13": "elections",
}
"""Hazard category codes (MLCommons / Llama Guard 3) -> names. The request model predicts S1, S2,
S5-S10 and S12 (what the shipped sets label); S4 and S10 also come from the lexicon."""

_ACTIONS = ("allow", "flag", "block")
_DEFAULT_INPUT: Mapping[str, str] = {c: "flag" for c in CATEGORIES}
_DEFAULT_OUTPUT: Mapping[str, str] = {**{c: "flag" for c in CATEGORIES}, "S4": "block", "S10": "block"}


def _actions(given: Mapping[str, str] | None, default: Mapping[str, str], name: str) -> dict[str, Verdict]:
    if given is not None and not isinstance(given, Mapping):
        raise ValueError(f"{name} must be a mapping of category code to action")
    merged = {**default, **(given or {})}
    unknown = sorted(set(merged) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"{name}: unknown categories {unknown}; known: {list(CATEGORIES)}")
    bad = {c: a for c, a in merged.items() if a not in _ACTIONS}
    if bad:
        raise ValueError(f"{name}: actions must be one of {list(_ACTIONS)}, got {bad}")
    return {c: Verdict(a) for c, a in merged.items()}


@register
class ContentSafetyPolicy:
    """Params: ``input_actions`` / ``output_actions`` (category code -> ``allow`` | ``flag`` |
    ``block``, merged over the defaults: inputs flag every category; outputs block S4 and S10 and
    flag the rest), ``threshold`` (P(harmful request) at or above which a text is harmful; default
    the shipped operating point, about 2 % false positives on benign prompts), ``roles`` (input
    roles judged, default ``["user"]``), ``score_outputs`` (default False: replies are judged by the
    lexicon only; True also applies the request model to them), ``model_path``.

    Stages: ``pre_call``, ``post_call``, ``stream`` (read-only, inline). Raises ``ValueError`` for
    bad params and ``ContentModelError`` (a ``ValueError``) for an unreadable model file.
    """

    type_name: ClassVar[str] = "content_safety"
    stages = frozenset({Stage.PRE_CALL, Stage.POST_CALL, Stage.STREAM})
    transforms = False
    execution = Execution.INLINE

    def __init__(
        self,
        *,
        input_actions: Mapping[str, str] | None = None,
        output_actions: Mapping[str, str] | None = None,
        threshold: float | None = None,
        roles: Iterable[str] | None = None,
        score_outputs: bool = False,
        model_path: str | Path | None = None,
    ) -> None:
        self.input_actions = _actions(input_actions, _DEFAULT_INPUT, "input_actions")
        self.output_actions = _actions(output_actions, _DEFAULT_OUTPUT, "output_actions")
        if isinstance(roles, str):
            raise ValueError("roles must be a list of role names, not a string")
        self.roles = frozenset(roles) if roles is not None else frozenset({"user"})
        if not self.roles:
            raise ValueError("roles must not be empty")
        if not isinstance(score_outputs, bool):
            raise ValueError(f"score_outputs must be true or false, got {score_outputs!r}")
        self.score_outputs = score_outputs
        self.model_path: Traversable = Path(model_path) if model_path is not None else DEFAULT_MODEL
        self.model = ContentSafetyModel.load(self.model_path)
        self.lexicon = Lexicon.load()
        if threshold is None:
            threshold = self.model.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.threshold = float(threshold)

    def findings(self, text: str, *, use_model: bool) -> list[tuple[str, float]]:
        """``(category, score)`` for every category found in ``text``: S10 / S4 from the lexicon
        (score 1.0) and, with ``use_model``, the request model's category when P(harmful) reaches
        the threshold (score = P(harmful)). Redaction placeholders left by ``pii`` / ``secrets``
        are folded to one neutral word first (``fold_placeholders``): unfolded, "write to
        <EMAIL_ADDRESS_1>" scored 0.67, over the threshold."""
        out: list[tuple[str, float]] = []
        if self.lexicon.slurs(text):
            out.append(("S10", 1.0))
        if self.lexicon.minor_sexual(text):
            out.append(("S4", 1.0))
        if use_model:
            s = self.model.score(fold_placeholders(text))
            if s.harmful >= self.threshold and s.category not in {c for c, _ in out}:
                out.append((s.category, s.harmful))
        return out

    def check(self, ctx: CheckContext) -> PolicyResult:
        """Judge the current turn's input texts (``pre_call``) or the completion / stream window
        (``post_call`` / ``stream``); the most severe category action decides."""
        if ctx.stage is Stage.PRE_CALL:
            actions = self.input_actions
            sites = [
                (s.location, t)
                for s, t in iter_message_texts(ctx.messages, roles=self.roles, start=ctx.turn_start)
            ]
            use_model = True
        else:
            actions = self.output_actions
            sites = [("completion", ctx.completion)] if ctx.completion else []
            use_model = self.score_outputs
        verdict, best, evidence = Verdict.ALLOW, 0.0, []
        for location, text in sites:
            for category, score in self.findings(text, use_model=use_model):
                v = actions[category]
                if v is Verdict.ALLOW:
                    continue
                evidence.append(Evidence(f"content_safety:{category}", location, detail=f"score={score:.3f}"))
                best = max(best, score)
                if v.severity > verdict.severity:
                    verdict = v
        if not evidence:
            return PolicyResult.allow("no harmful content found")
        cats = sorted({e.kind.split(":", 1)[1] for e in evidence}, key=lambda c: int(c[1:]))
        named = ", ".join(f"{c} {CATEGORIES[c]}" for c in cats)
        return PolicyResult(verdict, best, f"harmful content: {named}", tuple(evidence))

    def describe(self) -> Mapping[str, Any]:
        return {
            "threshold": self.threshold,
            "input_actions": {c: v.value for c, v in self.input_actions.items()},
            "output_actions": {c: v.value for c, v in self.output_actions.items()},
            "roles": sorted(self.roles),
            "score_outputs": self.score_outputs,
            "model": self.model_path.name,
            "model_terms": self.model.vocab_size,
        }
