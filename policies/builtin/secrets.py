"""``secrets``: find credentials (cloud keys, API tokens, private keys, JWTs, passwords in URLs)
in the request messages and in the completion; redact them with ``<KIND_n>`` placeholders
(``<AWS_ACCESS_KEY_1>``) through the request's ``RedactionVault``, or block / flag instead.

The recognisers and their look-alike rules are in ``policies.builtin.secret_patterns``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from policies.base import CheckContext, Execution, PolicyResult
from policies.builtin.redaction import ROLES, Action, cached_finder, parse_roles, run_span_policy
from policies.builtin.secret_patterns import KINDS, SecretFinder
from policies.registry import register
from rollguard.types import Stage


@register
class SecretsPolicy:
    """Params: ``action`` (``redact`` | ``block`` | ``flag``, default ``redact``), ``kinds``
    (subset of ``KINDS``, default all), ``roles`` (default all five roles: a credential pasted
    into the operator's own system prompt is still sent to the upstream, so it is redacted too).
    Raises ``ValueError`` for bad params.

    Stages: ``pre_call``, ``post_call``, ``stream``. Score 1.0 when anything is found, else 0.0.
    """

    type_name: ClassVar[str] = "secrets"
    stages = frozenset({Stage.PRE_CALL, Stage.POST_CALL, Stage.STREAM})
    transforms = True
    execution = Execution.INLINE

    def __init__(
        self,
        *,
        action: str = "redact",
        kinds: Iterable[str] | None = None,
        roles: Iterable[str] | None = None,
    ) -> None:
        self.action = Action.parse(action)
        if isinstance(kinds, str):
            raise ValueError("kinds must be a list of names")
        self.finder = SecretFinder(KINDS if kinds is None else kinds)
        self.roles = parse_roles(roles, ROLES)
        # Message texts repeat across a conversation's turns: their spans are cached per
        # configuration (``redaction.MESSAGE_SPANS``).
        self.message_finder = cached_finder(self.finder, f"secrets:{','.join(self.finder.kinds)}")

    def check(self, ctx: CheckContext) -> PolicyResult:
        """Find (and by default redact) credentials in ``ctx`` for its stage."""
        return run_span_policy(
            ctx, self.finder, action=self.action, roles=self.roles, message_finder=self.message_finder
        )

    def describe(self) -> Mapping[str, Any]:
        return {"action": self.action.value, "kinds": list(self.finder.kinds), "roles": sorted(self.roles)}
