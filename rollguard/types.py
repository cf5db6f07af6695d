"""Core value types shared by policies, detectors and the gateway.

Everything here is pure data: no I/O, no framework imports. Messages are kept in the OpenAI
chat-completions wire shape (plain ``dict`` objects, see ``Message``) because that is what arrives on
the hot path and what goes to the upstream; converting every request into objects and back would
cost time for nothing.

Score convention (everywhere): ``0.0`` = benign .. ``1.0`` = certain violation.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

Message: TypeAlias = dict[str, Any]
"""One chat message in OpenAI's wire shape: ``{"role": "user", "content": str | list[part], ...}``.

Roles: ``system``, ``developer``, ``user``, ``assistant`` (may carry ``tool_calls``), ``tool``.
"""


class Stage(enum.StrEnum):
    """Where in the request a policy runs (the LiteLLM / guardrails naming)."""

    PRE_CALL = "pre_call"
    """On the request messages, before the upstream is called."""
    POST_CALL = "post_call"
    """On the complete (non-streamed) completion."""
    STREAM = "stream"
    """On the streamed completion, through the hold-back window."""


class Verdict(enum.StrEnum):
    """What a policy concluded. Ordered by severity: ``allow < redact < flag < block``."""

    ALLOW = "allow"
    REDACT = "redact"
    FLAG = "flag"
    """Escalate to human review; the request proceeds."""
    BLOCK = "block"

    @property
    def severity(self) -> int:
        """Rank for "most severe verdict wins": allow 0, redact 1, flag 2, block 3."""
        return _SEVERITY[self]

    def is_block(self) -> bool:
        return self is Verdict.BLOCK

    def is_allow(self) -> bool:
        return self is Verdict.ALLOW


_SEVERITY = {Verdict.ALLOW: 0, Verdict.REDACT: 1, Verdict.FLAG: 2, Verdict.BLOCK: 3}


class Mode(enum.StrEnum):
    """How a configured policy's verdict is applied."""

    ENFORCE = "enforce"
    SHADOW = "shadow"
    """Record the decision, never change the outcome (shadow mode)."""


class OnError(enum.StrEnum):
    """What a policy's failure (exception or timeout) turns into. Never an implicit allow."""

    BLOCK = "block"
    """Fail closed: HTTP 503 ``guardrail_unavailable``."""
    FLAG = "flag"
    """Let the request through and escalate it for review."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where a finding is, never what it is.

    ``kind`` names the entity or rule (``EMAIL_ADDRESS``, ``aws_access_key``, ``injection``);
    ``location`` names the place (``messages[2].content``, ``messages[1].tool_calls[0].function.arguments``,
    ``completion``); ``start``/``end`` are character offsets into that text (end exclusive) or -1
    when not applicable. ``detail`` may carry non-sensitive numbers (a length, a score); it must
    never carry the matched value.
    """

    kind: str
    location: str
    start: int = -1
    end: int = -1
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "location": self.location,
            "start": self.start,
            "end": self.end,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True, init=False)
class Decision:
    """One policy's judgement on one stage of one interaction.

    ``policy`` is the *configured* id (two instances of one policy type are normal);
    ``score`` is in [0, 1]; ``elapsed_ms`` is wall time of the check in milliseconds;
    ``enforced`` is False for shadow-mode decisions and for verdicts that were not applied.
    ``error`` names the failure class when the policy raised or timed out (then ``verdict`` is
    the policy's ``on_error``).
    """

    policy: str
    policy_type: str
    stage: Stage
    verdict: Verdict
    score: float
    reason: str
    evidence: tuple[Evidence, ...] = ()
    elapsed_ms: float = 0.0
    enforced: bool = True
    error: str | None = None

    def __init__(
        self,
        policy: str,
        policy_type: str,
        stage: Stage,
        verdict: Verdict,
        score: float,
        reason: str,
        evidence: tuple[Evidence, ...] = (),
        elapsed_ms: float = 0.0,
        enforced: bool = True,
        error: str | None = None,
    ) -> None:
        """The dataclass ``__init__`` of a frozen class sets each field through
        ``object.__setattr__`` (~3 us for these ten fields); the slots' own setters
        (``_DECISION_SLOTS``) do the same in about half of that. The pipeline builds one
        ``Decision`` per policy and stage, ~20 per request."""
        (s_policy, s_type, s_stage, s_verdict, s_score, s_reason, s_evidence, s_ms, s_enf, s_err) = (
            _DECISION_SLOTS
        )
        s_policy(self, policy)
        s_type(self, policy_type)
        s_stage(self, stage)
        s_verdict(self, verdict)
        s_score(self, score)
        s_reason(self, reason)
        s_evidence(self, evidence)
        s_ms(self, elapsed_ms)
        s_enf(self, enforced)
        s_err(self, error)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "policy_type": self.policy_type,
            # ``_value_``: the same str as ``.value`` without the enum property (~10x slower)
            "stage": self.stage._value_,
            "verdict": self.verdict._value_,
            "score": round(self.score, 4),
            "reason": self.reason,
            "evidence": [e.to_dict() for e in self.evidence],
            "elapsed_ms": round(self.elapsed_ms, 3),
            "enforced": self.enforced,
            "error": self.error,
        }


_DECISION_SLOTS: tuple[Any, ...] = tuple(Decision.__dict__[f].__set__ for f in Decision.__slots__)
"""The setters of ``Decision``'s slots, in field order (``Decision.__init__``)."""


@dataclass(frozen=True, slots=True)
class Signal:
    """A detector's per-interaction finding (issue 3): score in [0, 1], boolean at the detector's
    documented threshold, and evidence a reviewer can see highlighted."""

    detector: str
    score: float
    flagged: bool
    evidence: tuple[Evidence, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "flagged": self.flagged,
            "evidence": [e.to_dict() for e in self.evidence],
        }


@dataclass(slots=True)
class FlagSnapshot:
    """The flags evaluated once for a request: ``enabled`` per flag name, ``variants`` per flag
    name (variant name, e.g. ``control`` / ``canary``), and the payload of each variant."""

    enabled: dict[str, bool] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=dict)
    payloads: dict[str, str] = field(default_factory=dict)

    def is_enabled(self, name: str | None, default: bool = True) -> bool:
        """A missing flag name (``None``) means "not gated": ``default``."""
        if name is None:
            return default
        return self.enabled.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": dict(self.enabled), "variants": dict(self.variants)}


@dataclass(slots=True)
class Interaction:
    """One request/response through the gateway: the audit record (PII already redacted before it
    is persisted).

    Times are UTC epoch milliseconds. ``subject`` is the hashed user id used for stickiness
    (``None`` when the request had none). ``completion`` is the final text the client received.
    """

    id: str
    created_ms: int
    tenant: str
    model: str
    subject: str | None = None
    session: str | None = None
    stream: bool = False
    messages: list[Message] = field(default_factory=list)
    completion: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    upstream_model: str | None = None
    status: int = 200
    error_code: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    flags: FlagSnapshot = field(default_factory=FlagSnapshot)
    decisions: list[Decision] = field(default_factory=list)
    latency_ms: float = 0.0
    upstream_ms: float = 0.0
    policy_ms: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)
    request_id: str | None = None
    config_version: str | None = None

    @property
    def verdict(self) -> Verdict:
        """The most severe *enforced* verdict (``allow`` when there is none)."""
        worst = Verdict.ALLOW
        for d in self.decisions:
            if d.enforced and d.verdict.severity > worst.severity:
                worst = d.verdict
        return worst

    @property
    def variant(self) -> str | None:
        """The model-rollout variant name, when a model flag assigned one."""
        return self.metadata.get("variant")

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready audit record appended to ``rollguard:interactions``."""
        return {
            "id": self.id,
            "created_ms": self.created_ms,
            "tenant": self.tenant,
            "model": self.model,
            "upstream_model": self.upstream_model,
            "subject": self.subject,
            "session": self.session,
            "stream": self.stream,
            "messages": self.messages,
            "completion": self.completion,
            "tool_calls": self.tool_calls,
            "finish_reason": self.finish_reason,
            "status": self.status,
            "error_code": self.error_code,
            "usage": self.usage,
            "verdict": self.verdict.value,
            "flags": self.flags.to_dict(),
            "decisions": [d.to_dict() for d in self.decisions],
            "latency_ms": round(self.latency_ms, 3),
            "upstream_ms": round(self.upstream_ms, 3),
            "policy_ms": round(self.policy_ms, 3),
            "metadata": dict(self.metadata),
            "request_id": self.request_id,
            "config_version": self.config_version,
        }


def text_of(content: Any) -> str:
    """The text of a message ``content``: a string, or the ``text`` of every text part of a list
    of content parts (joined with newlines); images and other parts contribute nothing."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return ""


SHORTCUT_DETECTORS = (
    "refusal",
    "over_refusal",
    "hedging",
    "sycophancy",
    "verbosity",
    "repetition",
    "evasion",
    "format_gaming",
)
"""The shortcut / reward-hacking detectors by name, in their fixed order (``detectors.shortcuts``
runs them; rollout plans name their rates ``<detector>_rate``)."""
