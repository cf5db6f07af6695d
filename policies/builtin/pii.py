"""``pii``: find personal data (e-mail, phone, payment card, IBAN, US SSN, IP address) in the
request messages and in the completion, and redact it with typed placeholders (``<EMAIL_ADDRESS_1>``)
through the request's ``RedactionVault``, or block / flag instead.

What counts as each entity, and the look-alikes left alone, is documented in
``policies.builtin.pii_entities``. Where the policy looks: ``policies.builtin.locations``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from policies.base import CheckContext, Execution, PolicyResult
from policies.builtin.pii_entities import ENTITIES, PiiFinder
from policies.builtin.redaction import Action, cached_finder, parse_roles, run_span_policy
from policies.registry import register
from rollguard.types import Stage

DEFAULT_ROLES: tuple[str, ...] = ("user", "assistant", "tool")
"""Roles scanned by default. ``system``/``developer`` messages are the operator's own text (a
support address in the instructions is there on purpose); add them explicitly to scan them."""


@register
class PiiPolicy:
    """Params: ``action`` (``redact`` | ``block`` | ``flag``, default ``redact``), ``entities``
    (subset of ``ENTITIES``, default all), ``roles`` (subset of ``ROLES``, default
    ``DEFAULT_ROLES``; applies to ``pre_call``). Raises ``ValueError`` for bad params.

    Stages: ``pre_call`` (messages, history included), ``post_call`` (completion and its tool
    calls), ``stream`` (the window text). Score 1.0 when anything is found, else 0.0.
    """

    type_name: ClassVar[str] = "pii"
    stages = frozenset({Stage.PRE_CALL, Stage.POST_CALL, Stage.STREAM})
    transforms = True
    execution = Execution.INLINE

    def __init__(
        self,
        *,
        action: str = "redact",
        entities: Iterable[str] | None = None,
        roles: Iterable[str] | None = None,
    ) -> None:
        self.action = Action.parse(action)
        if isinstance(entities, str):
            raise ValueError("entities must be a list of names")
        self.finder = PiiFinder(ENTITIES if entities is None else entities)
        self.roles = parse_roles(roles, DEFAULT_ROLES)
        # Message texts repeat across a conversation's turns: their spans are cached per
        # configuration (``redaction.MESSAGE_SPANS``).
        self.message_finder = cached_finder(self.finder, f"pii:{','.join(self.finder.entities)}")

    def check(self, ctx: CheckContext) -> PolicyResult:
        """Find (and by default redact) PII in ``ctx`` for its stage; see ``run_span_policy``."""
        return run_span_policy(
            ctx, self.finder, action=self.action, roles=self.roles, message_finder=self.message_finder
        )

    def describe(self) -> Mapping[str, Any]:
        return {
            "action": self.action.value,
            "entities": list(self.finder.entities),
            "roles": sorted(self.roles),
        }
