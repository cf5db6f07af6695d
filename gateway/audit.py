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
from typing import Any

from policies.base import CheckContext, Policy, RedactionVault
from policies.registry import build
from rollguard.types import Interaction, Stage, Verdict

log = logging.getLogger("rollguard.audit")

Sink = Callable[[dict[str, Any]], None]
Escalate = Callable[[dict[str, Any]], Awaitable[None]]


class PrivacyRedactor:
    """Masks PII and secrets in an interaction record with the ``pii`` and ``secrets`` policies'
    transforms (all roles, default entity set). Placeholders use a fresh vault per record."""

    def __init__(self) -> None:
        self._policies: list[Policy] = []
        for type_name, params in (
            ("pii", {"roles": ["system", "developer", "user", "assistant", "tool"]}),
            ("secrets", {}),
        ):
            try:
                self._policies.append(build(type_name, params))
            except (KeyError, ValueError):
                try:
                    self._policies.append(build(type_name, {}))
                except (KeyError, ValueError) as exc:  # pragma: no cover - built-ins always exist
                    log.error("privacy redactor without %s: %s", type_name, exc)

    def redact(self, interaction: Interaction) -> None:
        """Rewrite ``interaction.messages`` / ``completion`` / ``tool_calls`` in place."""
        vault = RedactionVault()
        for policy in self._policies:
            ctx = CheckContext(stage=Stage.PRE_CALL, messages=interaction.messages, vault=vault)
            out = policy.check(ctx)
            if out.verdict is not Verdict.ALLOW and out.messages is not None:
                interaction.messages = out.messages
            if interaction.completion or interaction.tool_calls:
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

    def record(self, interaction: Interaction) -> None:
        """Redact (unless the tenant opted in to raw content), append, and escalate flags.
        Never raises: an audit failure is logged and counted by the store, the client already has
        its answer."""
        try:
            if interaction.tenant not in self._raw_tenants:
                self._redactor.redact(interaction)
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
