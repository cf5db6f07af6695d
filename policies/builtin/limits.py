"""``limits``: block a request over its tenant's caps on the number of messages, the total text
characters, or the requested ``max_tokens`` / ``max_completion_tokens``.

Characters are counted over every text location of every message (``locations.iter_message_texts``:
string content, text parts, tool-call arguments), in Unicode code points. ``max_tokens`` is the
request's completion-token budget (``CheckContext.max_tokens``); a request without one passes the
check and the gateway sends the cap upstream as its ``max_tokens`` (``gateway.tenants.TokenCaps``).
``None`` means "no cap".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from policies.base import CheckContext, Execution, PolicyResult
from policies.builtin.locations import iter_message_texts
from policies.registry import register
from rollguard.types import Evidence, Stage, Verdict

_FIELDS = ("max_messages", "max_chars", "max_tokens")


@dataclass(frozen=True, slots=True)
class Caps:
    """One tenant's caps (``None`` = unlimited): messages per request, characters per request,
    completion tokens per request."""

    max_messages: int | None = 256
    max_chars: int | None = 400_000
    max_tokens: int | None = None


def _cap(name: str, value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer or null, got {value!r}")
    return value


@register
class LimitsPolicy:
    """Params: ``max_messages`` (default 256), ``max_chars`` (default 400,000, about 100k tokens),
    ``max_tokens`` (default none), ``tenants`` (``{tenant: {max_messages?, max_chars?,
    max_tokens?}}``; unspecified fields inherit the defaults above). Raises ``ValueError`` for a
    non-positive or non-integer cap or an unknown field.

    Stage: ``pre_call`` (read-only). Verdict: ``block`` with every exceeded cap in the reason
    (``"messages 300 > limit 256"``), else ``allow``.
    """

    type_name: ClassVar[str] = "limits"
    stages = frozenset({Stage.PRE_CALL})
    transforms = False
    execution = Execution.INLINE

    def __init__(
        self,
        *,
        max_messages: int | None = 256,
        max_chars: int | None = 400_000,
        max_tokens: int | None = None,
        tenants: Mapping[str, Mapping[str, int | None]] | None = None,
    ) -> None:
        self.default = Caps(
            _cap("max_messages", max_messages), _cap("max_chars", max_chars), _cap("max_tokens", max_tokens)
        )
        self.tenants: dict[str, Caps] = {}
        if tenants is not None and not isinstance(tenants, Mapping):
            raise ValueError("tenants must be a mapping of tenant name to caps")
        for name, caps in (tenants or {}).items():
            if not isinstance(caps, Mapping):
                raise ValueError(f"tenants.{name} must be a mapping of caps")
            unknown = sorted(set(caps) - set(_FIELDS))
            if unknown:
                raise ValueError(f"tenants.{name}: unknown field(s) {unknown}; allowed: {list(_FIELDS)}")
            values = {k: _cap(f"tenants.{name}.{k}", v) for k, v in caps.items()}
            self.tenants[str(name)] = replace(self.default, **values)

    def caps_for(self, tenant: str) -> Caps:
        """The caps that apply to ``tenant`` (its override, else the defaults)."""
        return self.tenants.get(tenant, self.default)

    def check(self, ctx: CheckContext) -> PolicyResult:
        """Compare the request with its tenant's caps."""
        caps = self.caps_for(ctx.tenant)
        exceeded: list[tuple[str, str, int, int]] = []
        n = len(ctx.messages)
        if caps.max_messages is not None and n > caps.max_messages:
            exceeded.append(("max_messages", "messages", n, caps.max_messages))
        if caps.max_chars is not None:
            chars = sum(len(text) for _, text in iter_message_texts(ctx.messages))
            if chars > caps.max_chars:
                exceeded.append(("max_chars", "characters", chars, caps.max_chars))
        if caps.max_tokens is not None and ctx.max_tokens is not None and ctx.max_tokens > caps.max_tokens:
            exceeded.append(("max_tokens", "max_tokens", ctx.max_tokens, caps.max_tokens))
        if not exceeded:
            return PolicyResult.allow("within limits")
        reason = "; ".join(f"{label} {value} > limit {limit}" for _, label, value, limit in exceeded)
        evidence = tuple(
            Evidence(kind, "request" if kind == "max_tokens" else "messages", detail=f"{value} > {limit}")
            for kind, _, value, limit in exceeded
        )
        return PolicyResult(Verdict.BLOCK, 1.0, reason, evidence)

    def describe(self) -> Mapping[str, Any]:
        def as_dict(c: Caps) -> dict[str, int | None]:
            return {"max_messages": c.max_messages, "max_chars": c.max_chars, "max_tokens": c.max_tokens}

        return {**as_dict(self.default), "tenants": {k: as_dict(v) for k, v in sorted(self.tenants.items())}}
