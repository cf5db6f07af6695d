"""The audit trail: one record per interaction, PII redacted, appended to the interactions stream;
interactions with an enforced ``flag`` decision are also escalated to review.

Runs after the response is sent (off the request's latency path). A large record (more than
``LargeInputs.threshold_chars`` characters of message text) is redacted by the large-input
worker (``gateway.large``: a child process, or a thread), never on the event loop; the record of
a request ``limits`` rejected keeps only the head of each text (``gateway.large.clip_messages``),
so an oversized body is never redacted whole. The privacy redaction
(``policies.privacy.PrivacyRedactor.redact_record``: what it masks is documented there) is applied
to every record whatever the request's own policies did (a policy can be off by flag or in shadow
mode), unless the tenant opted in to raw content.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.large import LargeInputs, clip_messages, rejected_by_limits
from policies.privacy import Coverage, PrivacyRedactor
from rollguard.types import Interaction, Verdict

__all__ = ["AuditTrail", "Coverage", "PrivacyRedactor"]

log = logging.getLogger("rollguard.audit")

Sink = Callable[[dict[str, Any]], None]
Escalate = Callable[[dict[str, Any]], Awaitable[None]]


class AuditTrail:
    """Records interactions. ``sink`` appends a record to the store (non-blocking, buffered);
    ``escalate`` hands a flagged record to the review service; ``large`` (optional) redacts large
    records on its worker thread."""

    def __init__(
        self,
        sink: Sink,
        escalate: Escalate | None = None,
        raw_tenants: frozenset[str] = frozenset(),
        large: LargeInputs | None = None,
    ) -> None:
        self._sink = sink
        self._escalate = escalate
        self._raw_tenants = raw_tenants
        self._large = large
        self._redactor = PrivacyRedactor()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def redactor(self) -> PrivacyRedactor:
        return self._redactor

    def record(self, interaction: Interaction, coverage: Coverage | None = None) -> None:
        """Redact (unless the tenant opted in to raw content), append, and escalate flags.
        ``coverage``: what the request's own enforced transforms already redacted. A large record
        is redacted on the worker thread and appended when done (``drain`` waits for it). Never
        raises: an audit failure is logged, the client already has its answer."""
        if rejected_by_limits(interaction):
            interaction = dataclasses.replace(interaction, messages=clip_messages(interaction.messages))
        if self._large is not None and self._large.is_large(interaction.messages):
            self._spawn(self._record_large(self._large, interaction, coverage))
            return
        self._append(interaction, self._prepare(interaction, coverage))

    def _prepare(self, interaction: Interaction, coverage: Coverage | None) -> dict[str, Any] | None:
        """The record to append (thread-safe: touches no loop state); None when it failed."""
        try:
            if interaction.tenant not in self._raw_tenants:
                return self._redactor.redact_record(interaction, coverage)
            return interaction.to_record()
        except Exception:
            log.exception("audit record for interaction %s failed", interaction.id)
            return None

    async def _record_large(
        self, large: LargeInputs, interaction: Interaction, coverage: Coverage | None
    ) -> None:
        if interaction.tenant in self._raw_tenants:
            rec = await large.call(self._prepare, interaction, coverage)
        else:
            try:
                rec = await large.redact_record(self._redactor, interaction, coverage)
            except Exception:
                log.exception("audit record for interaction %s failed", interaction.id)
                rec = None
        self._append(interaction, rec)

    def _append(self, interaction: Interaction, rec: dict[str, Any] | None) -> None:
        if rec is None:
            return
        try:
            self._sink(rec)
        except Exception:
            log.exception("audit record for interaction %s failed", interaction.id)
            return
        if self._escalate is not None and any(
            d.enforced and d.verdict is Verdict.FLAG for d in interaction.decisions
        ):
            self._spawn(self._escalate_safely(rec))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _escalate_safely(self, rec: dict[str, Any]) -> None:
        assert self._escalate is not None
        try:
            await self._escalate(rec)
        except Exception:
            log.exception("escalation of interaction %s failed", rec.get("id"))

    async def drain(self) -> None:
        """Wait for pending large records and escalations (shutdown)."""
        while self._tasks:  # a large record's append may start an escalation
            await asyncio.gather(*self._tasks, return_exceptions=True)
