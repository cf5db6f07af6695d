"""The audit trail: one record per interaction, PII redacted, appended to the interactions stream;
interactions with an enforced ``flag`` decision are also escalated to review.

Runs after the response is sent (off the request's latency path). The privacy redaction is applied
to every record whatever the request's own policies did (a policy can be off by flag or in shadow
mode), unless the tenant opted in to raw content.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from policies.base import CheckContext, Policy, RedactionVault
from policies.registry import build
from rollguard.types import Interaction, Stage, Verdict

log = logging.getLogger("rollguard.audit")

Sink = Callable[[dict[str, Any]], None]
Escalate = Callable[[dict[str, Any]], Awaitable[None]]


ALL_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
PRIVACY_TYPES = ("pii", "secrets")


@dataclass(slots=True)
class Coverage:
    """What the request's own enforced transforms already redacted: for each privacy policy type,
    the roles its ``pre_call`` run scanned, and whether it ran on the completion (``post_call`` /
    ``stream``). The audit redactor then scans only what is left."""

    pre: dict[str, frozenset[str]] = field(default_factory=dict)
    post: set[str] = field(default_factory=set)


class PrivacyRedactor:
    """Masks PII and secrets in an interaction record with the ``pii`` and ``secrets`` policies'
    transforms (default entity sets), scanning only roles and parts the request's own enforced
    policies did not already redact. Placeholders use a fresh vault per record."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, frozenset[str]], Policy] = {}
        self.defaults = {t: dict(self._policy(t, ALL_ROLES).describe()) for t in PRIVACY_TYPES}

    def _policy(self, type_name: str, roles: frozenset[str]) -> Policy:
        key = (type_name, roles)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = build(type_name, {"roles": sorted(roles)})
        return found

    def eligible_roles(self, policy: Policy) -> frozenset[str] | None:
        """The roles ``policy`` redacts with the default entity set, or None when it is not a
        privacy transform the audit can rely on (another action, fewer entities)."""
        default = self.defaults.get(policy.type_name)
        if default is None:
            return None
        desc = dict(policy.describe())
        roles = frozenset(desc.pop("roles", ()))
        base = {k: v for k, v in default.items() if k != "roles"}
        return roles if desc == base else None

    def redact(self, interaction: Interaction, coverage: Coverage | None = None) -> None:
        """Rewrite ``interaction.messages`` / ``completion`` / ``tool_calls`` in place."""
        cov = coverage or Coverage()
        vault = RedactionVault()
        for type_name in PRIVACY_TYPES:
            left = ALL_ROLES - cov.pre.get(type_name, frozenset())
            if left:
                policy = self._policy(type_name, frozenset(left))
                ctx = CheckContext(stage=Stage.PRE_CALL, messages=interaction.messages, vault=vault)
                out = policy.check(ctx)
                if out.verdict is not Verdict.ALLOW and out.messages is not None:
                    interaction.messages = out.messages
            if type_name in cov.post or not (interaction.completion or interaction.tool_calls):
                continue
            policy = self._policy(type_name, ALL_ROLES)
            ctx = CheckContext(
                stage=Stage.POST_CALL,
                messages=interaction.messages,
                completion=interaction.completion or "",
                completion_tool_calls=list(interaction.tool_calls),
                vault=vault,
            )
            out = policy.check(ctx)
            if out.verdict is not Verdict.ALLOW:
                if out.completion is not None:
                    interaction.completion = out.completion
                if out.completion_tool_calls is not None:
                    interaction.tool_calls = out.completion_tool_calls


class AuditTrail:
    """Records interactions. ``sink`` appends a record to the store (non-blocking, buffered);
    ``escalate`` hands a flagged record to the review service."""

    def __init__(
        self, sink: Sink, escalate: Escalate | None = None, raw_tenants: frozenset[str] = frozenset()
    ) -> None:
        self._sink = sink
        self._escalate = escalate
        self._raw_tenants = raw_tenants
        self._redactor = PrivacyRedactor()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def redactor(self) -> PrivacyRedactor:
        return self._redactor

    def record(self, interaction: Interaction, coverage: Coverage | None = None) -> None:
        """Redact (unless the tenant opted in to raw content), append, and escalate flags.
        ``coverage``: what the request's own enforced transforms already redacted. Never raises:
        an audit failure is logged, the client already has its answer."""
        try:
            if interaction.tenant not in self._raw_tenants:
                self._redactor.redact(interaction, coverage)
            rec = interaction.to_record()
            self._sink(rec)
        except Exception:
            log.exception("audit record for interaction %s failed", interaction.id)
            return
        if self._escalate is not None and any(
            d.enforced and d.verdict is Verdict.FLAG for d in interaction.decisions
        ):
            task = asyncio.get_running_loop().create_task(self._escalate_safely(rec))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _escalate_safely(self, rec: dict[str, Any]) -> None:
        assert self._escalate is not None
        try:
            await self._escalate(rec)
        except Exception:
            log.exception("escalation of interaction %s failed", rec.get("id"))

    async def drain(self) -> None:
        """Wait for pending escalations (shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
