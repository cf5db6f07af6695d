"""The audit trail: one record per interaction, PII redacted, appended to the interactions stream;
interactions with an enforced ``flag`` decision are also escalated to review.

Runs after the response is sent (off the request's latency path). The privacy redaction
(``policies.privacy.PrivacyRedactor.redact_record``: what it masks is documented there) is applied
to every record whatever the request's own policies did (a policy can be off by flag or in shadow
mode), unless the tenant opted in to raw content.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from policies.privacy import Coverage, PrivacyRedactor
from rollguard.types import Interaction, Verdict

__all__ = ["AuditTrail", "Coverage", "PrivacyRedactor"]

log = logging.getLogger("rollguard.audit")

Sink = Callable[[dict[str, Any]], None]
Escalate = Callable[[dict[str, Any]], Awaitable[None]]


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
                rec = self._redactor.redact_record(interaction, coverage)
            else:
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
