"""The ``content_safety`` policy: harmful requests and harmful content by hazard category, named
after the MLCommons hazard taxonomy that Llama Guard 3 uses (Inan et al. 2023; Llama Guard 3 model
card: S1 violent crimes .. S14 code interpreter abuse).

Detectors (``policies.builtin.content_safety_model``: linear heads over hashed word and character
n-grams, trained by ``gateway/tools/train_content_safety.py`` on the shipped sets):

- the request model gives P(harmful request); applied to the current turn's user messages at
  ``pre_call``;
- the output model gives P(harmful reply); applied to the completion at ``post_call`` and to each
  stream window (context + held-back text) at ``stream``, with a stricter threshold there since a
  reply has many windows;
- a category head names the most likely hazard category of a text the models flag;
- a slur lexicon (S10) and a minors + sexual-content rule (S4) (``policies.builtin.content_lexicon``),
  applied to inputs and outputs, streams included: on a stream the hold-back window is checked
  before any of it is released, so a blocked reply leaks no chunk of the matched text.

Each category has its action per direction; the defaults follow issue 9: outputs with slurs or
sexual content involving minors are blocked, harmful requests and other harmful output are flagged
(the model can decline and the review queue sees it). Reasons and evidence name the category and
score, never the text.
"""

from __future__ import annotations

import json
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

__all__ = [
    "CATEGORIES",
    "DEFAULT_MODEL",
    "STREAM_WINDOW",
    "ContentSafetyPolicy",
    "output_sites",
    "stream_windows",
]

DEFAULT_MODEL = resources.files("policies") / "data" / "content_safety.model.npz"
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
"""Hazard category codes (MLCommons / Llama Guard 3) -> names. The category head predicts S1, S2,
S5-S10 and S12 (what the shipped sets label); S4 and S10 also come from the lexicon."""

_ACTIONS = ("allow", "flag", "block")
_DEFAULT_INPUT: Mapping[str, str] = {c: "flag" for c in CATEGORIES}
_DEFAULT_OUTPUT: Mapping[str, str] = {**{c: "flag" for c in CATEGORIES}, "S4": "block", "S10": "block"}


STREAM_WINDOW = 256
"""Characters of the reply windows ``stream_threshold`` was set on: the trainer scores a reply as a
stream by its highest-scoring window of 256 characters, one every 128
(``gateway.tools.train_content_safety.stream_windows``)."""


def stream_windows(text: str, size: int = STREAM_WINDOW) -> list[str]:
    """``text`` as the output model judges it at the ``stream`` stage: whole up to 1.5 x ``size``
    characters (a hold-back window: 128 released + about 130-190 held-back characters), else
    windows of ``size`` characters every ``size // 2``, the last ending at the end (the
    trainer's windows). A burst of stream chunks checked at once (``StreamGuard`` batches) is
    thus judged as the threshold was set, not diluted in one long text."""
    if len(text) <= size * 3 // 2:
        return [text]
    step = max(size // 2, 1)
    return [text[i : i + size] for i in [*range(0, len(text) - size, step), len(text) - size]]


def _argument_text(raw: str) -> str:
    """A tool call's ``arguments`` as the text a reader sees: every object key and string value
    of the JSON, one a line (a model judges words, not JSON punctuation); the raw string when it
    is not JSON."""
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        return raw
    out: list[str] = []
    stack: list[Any] = [parsed]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                out.append(str(key))
                stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)
    return "\n".join(t for t in out if t)


def output_sites(ctx: CheckContext) -> list[tuple[str, str]]:
    """``(location, text)`` of every text of a reply at ``post_call`` / ``stream``: the completion
    and each tool call's arguments (``completion_tool_calls[k].function.arguments``, as
    ``_argument_text``; the chat service passes a legacy ``function_call`` as one more call).
    Tool names and ids are not text."""
    sites = [("completion", ctx.completion)] if ctx.completion else []
    for k, call in enumerate(ctx.completion_tool_calls):
        fn = call.get("function") if isinstance(call, Mapping) else None
        args = fn.get("arguments") if isinstance(fn, Mapping) else None
        if isinstance(args, str) and args:
            text = _argument_text(args)
            if text:
                sites.append((f"completion_tool_calls[{k}].function.arguments", text))
    return sites


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


def _probability(value: object, name: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


@register
class ContentSafetyPolicy:
    """Params: ``input_actions`` / ``output_actions`` (category code -> ``allow`` | ``flag`` |
    ``block``, merged over the defaults: inputs flag every category; outputs block S4 and S10 and
    flag the rest), ``threshold`` (P(harmful request) at or above which a request is harmful;
    default the shipped operating point, about 2 % false positives on benign prompts),
    ``output_threshold`` / ``stream_threshold`` (P(harmful reply) for a whole completion / for a
    stream window; defaults: the shipped points, about 2 % of benign replies), ``roles`` (input roles
    judged, default ``["user"]``), ``score_outputs`` (default True: the output model judges
    replies; False leaves replies to the lexicon), ``model_can_block`` (default False: a model
    finding is at most a flag, whatever its category's action; only the exact lexicon rules
    block; True lets a category's ``block`` apply to model findings too), ``model_path``.

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
        output_threshold: float | None = None,
        stream_threshold: float | None = None,
        roles: Iterable[str] | None = None,
        score_outputs: bool = True,
        model_can_block: bool = False,
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
        if not isinstance(model_can_block, bool):
            raise ValueError(f"model_can_block must be true or false, got {model_can_block!r}")
        self.model_can_block = model_can_block
        self.model_path: Traversable = Path(model_path) if model_path is not None else DEFAULT_MODEL
        self.model = ContentSafetyModel.load(self.model_path)
        self.lexicon = Lexicon.load()
        self.threshold = _probability(threshold, "threshold", self.model.request_threshold)
        self.output_threshold = _probability(
            output_threshold, "output_threshold", self.model.output_threshold
        )
        self.stream_threshold = _probability(
            stream_threshold, "stream_threshold", self.model.stream_threshold
        )

    def findings(self, text: str, stage: Stage = Stage.PRE_CALL) -> list[tuple[str, float, bool]]:
        """``(category, score, exact)`` for every category found in ``text`` at ``stage`` (see
        ``judge``)."""
        return self.judge(text, stage)[0]

    def judge(self, text: str, stage: Stage = Stage.PRE_CALL) -> tuple[list[tuple[str, float, bool]], float]:
        """``(category, score, exact)`` for every category found in ``text`` at ``stage``: S10 / S4
        from the lexicon (score 1.0, ``exact`` True); the request model (``pre_call``) or, with
        ``score_outputs``, the output model (``post_call`` / ``stream``, each with its threshold)
        gives P(harmful) and, when it reaches the threshold, the category head names the category
        (score = P(harmful), ``exact`` False).
        Redaction placeholders left by ``pii`` / ``secrets`` are folded to one neutral word first
        (``fold_placeholders``): unfolded, "write to <EMAIL_ADDRESS_1>" scored 0.67, over the
        threshold of the first request model. Returns the findings and the model's P(harmful)
        (0.0 when no model ran)."""
        out: list[tuple[str, float, bool]] = []
        slurs, minor_sexual = self.lexicon.scan(text)
        if slurs:
            out.append(("S10", 1.0, True))
        if minor_sexual:
            out.append(("S4", 1.0, True))
        if stage is Stage.PRE_CALL:
            output, thr = False, self.threshold
        elif self.score_outputs:
            output = True
            thr = self.output_threshold if stage is Stage.POST_CALL else self.stream_threshold
        else:
            return out, 0.0
        folded = fold_placeholders(text)
        if stage is Stage.STREAM:
            judged = [self.model.judge(w, output, thr) for w in stream_windows(folded)]
            p, category = max(judged, key=lambda r: r[0])
        else:
            p, category = self.model.judge(folded, output, thr)
        if category is not None and category not in {c for c, _, _ in out}:
            out.append((category, p, False))
        return out, p

    def check(self, ctx: CheckContext) -> PolicyResult:
        """Judge the current turn's input texts (``pre_call``) or the completion / stream window and
        the reply's tool-call arguments (``post_call`` / ``stream``: ``output_sites``); the most
        severe category action decides. An allow carries the model's highest P(harmful) as its
        score."""
        if ctx.stage is Stage.PRE_CALL:
            actions = self.input_actions
            sites = [
                (s.location, t)
                for s, t in iter_message_texts(ctx.messages, roles=self.roles, start=ctx.turn_start)
            ]
        else:
            actions = self.output_actions
            sites = output_sites(ctx)
        verdict, best, evidence = Verdict.ALLOW, 0.0, []
        p_max = 0.0
        for location, text in sites:
            found, p = self.judge(text, ctx.stage)
            p_max = max(p_max, p)
            for category, score, exact in found:
                v = actions[category]
                if v is Verdict.ALLOW:
                    continue
                if not exact and not self.model_can_block:
                    v = Verdict.FLAG
                evidence.append(Evidence(f"content_safety:{category}", location, detail=f"score={score:.3f}"))
                best = max(best, score)
                if v.severity > verdict.severity:
                    verdict = v
        if not evidence:
            # the model's highest P(harmful) as the score: the pipeline blocks a decoded payload
            # that scores near a threshold (``policies.pipeline``)
            return PolicyResult.allow("no harmful content found", p_max)
        cats = sorted({e.kind.split(":", 1)[1] for e in evidence}, key=lambda c: int(c[1:]))
        named = ", ".join(f"{c} {CATEGORIES[c]}" for c in cats)
        return PolicyResult(verdict, best, f"harmful content: {named}", tuple(evidence))

    def describe(self) -> Mapping[str, Any]:
        return {
            "threshold": self.threshold,
            "output_threshold": self.output_threshold,
            "stream_threshold": self.stream_threshold,
            "input_actions": {c: v.value for c, v in self.input_actions.items()},
            "output_actions": {c: v.value for c, v in self.output_actions.items()},
            "roles": sorted(self.roles),
            "score_outputs": self.score_outputs,
            "model_can_block": self.model_can_block,
            "model": self.model_path.name,
            "model_features": self.model.features,
        }
