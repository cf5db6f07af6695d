"""Reviewer free text (a verdict's ``note`` and ``corrected`` reply) through the gateway's own
privacy redaction before it is stored in a review queue or exported as training data.

Review items hold audit records that are already redacted (``policies.privacy``, unless the tenant
opted in with ``tenants.<t>.raw_content_opt_in``); a reviewer's note or corrected reply is new text
and gets the same treatment (``PrivacyRedactor.redact_note``: one placeholder vault per verdict, so
``jane.roe@example.com`` becomes ``<EMAIL_ADDRESS_1>`` in the note and in the corrected reply
alike). This module holds only the tenant opt-in rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

from policies.privacy import PrivacyRedactor


class ReviewerTextRedactor:
    """Redacts reviewer free text unless the item's tenant is in ``raw_tenants``.

    The redactor is built on first use (about 0.2 s once); a call then costs well under a
    millisecond for a note of a few hundred characters."""

    def __init__(self, raw_tenants: Iterable[str] = ()) -> None:
        self.raw_tenants = frozenset(raw_tenants)

    @cached_property
    def _redactor(self) -> PrivacyRedactor:
        return PrivacyRedactor()

    def keeps_raw(self, tenant: str) -> bool:
        """True when ``tenant`` opted in to raw content (its text is stored as written)."""
        return tenant in self.raw_tenants

    def redact(self, tenant: str, note: str, corrected: str | None) -> tuple[str, str | None]:
        """``(note, corrected)`` with PII and secrets replaced by placeholders (one vault for
        both), or unchanged for a tenant that opted in to raw content. Empty text is passed
        through without scanning."""
        if self.keeps_raw(tenant):
            return note, corrected
        return self._redactor.redact_note(note, corrected)

    def redact_always(self, text: str) -> str:
        """``text`` with PII and secrets replaced by placeholders whatever the tenant's consent
        (the queue page's snippets: a list view never shows raw content). About 0.2 ms for a
        few hundred characters once the redactor is built."""
        if not text:
            return text
        return self._redactor.redact_note(text, None)[0]
