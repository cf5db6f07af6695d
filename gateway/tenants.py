"""Per-tenant settings (``tenants.<t>``) applied to the parts that enforce them.

Limits: every ``limits`` policy gets the tenants' caps merged over its own ``params``
(``with_tenant_limits``), so ``tenants.acme.max_messages: 1`` blocks a 2-message request from
``acme`` with the same policy, verdict and audit trail as a cap set in the policy's params.
Precedence, highest first: ``tenants.<t>.<cap>``, the policy's ``params.tenants.<t>.<cap>``,
``tenants.default.<cap>``, the policy's ``params.<cap>``, the policy's built-in default.

Completion-token cap: a request that names no ``max_tokens`` / ``max_completion_tokens`` cannot
exceed a cap, so the gateway sends the cap upstream as its ``max_tokens`` (``TokenCaps``: the
smallest ``max_tokens`` cap of the enforcing ``limits`` policies that judged the request).

Retention (``tenants.<t>.retention_ms``) is applied by the store (``gateway.store.tenant_retention``);
raw-content consent (``raw_content_opt_in``) by the audit trail and the review service.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from policies.builtin.limits import LimitsPolicy
from rollguard.settings import DEFAULT_TENANT, PolicySpec, TenantSettings

if TYPE_CHECKING:
    from policies.pipeline import ConfiguredPolicy
    from rollguard.types import Decision

LIMITS_TYPE = "limits"


def with_tenant_limits(
    policies: Sequence[PolicySpec], tenants: Mapping[str, TenantSettings]
) -> list[PolicySpec]:
    """``policies`` with each ``limits`` policy's ``params`` carrying the tenants' caps (copies; the
    specs given are not changed). ``tenants.default`` caps become the policy's defaults; other
    tenants' caps are merged field by field into ``params.tenants.<t>``. A ``params.tenants`` that is
    not a mapping is left for the policy to refuse."""
    if not any(t.limits() for t in tenants.values()):
        return list(policies)
    return [_merged(p, tenants) if p.type == LIMITS_TYPE else p for p in policies]


def _merged(spec: PolicySpec, tenants: Mapping[str, TenantSettings]) -> PolicySpec:
    params: dict[str, Any] = dict(spec.params)
    own = params.get("tenants") or {}
    if not isinstance(own, Mapping):
        return spec
    merged: dict[str, Any] = {str(k): dict(v) if isinstance(v, Mapping) else v for k, v in own.items()}
    for name, t in tenants.items():
        caps = t.limits()
        if not caps:
            continue
        if name == DEFAULT_TENANT:
            params.update(caps)
        else:
            base = merged.get(name)
            merged[name] = {**(base if isinstance(base, Mapping) else {}), **caps}
    if merged:
        params["tenants"] = merged
    return spec.model_copy(update={"params": params})


class TokenCaps:
    """The completion-token caps (``max_tokens``, in tokens) of the configured ``limits`` policies,
    for requests that name none. Built once per process; ``cap`` is a dictionary lookup per
    decision and nothing at all when no ``limits`` policy has a ``max_tokens`` cap."""

    def __init__(self, policies: Iterable[ConfiguredPolicy]) -> None:
        self._limits: dict[str, LimitsPolicy] = {
            p.id: p.policy
            for p in policies
            if isinstance(p.policy, LimitsPolicy) and _has_token_cap(p.policy)
        }

    def cap(self, decisions: Iterable[Decision], tenant: str) -> int | None:
        """The smallest ``max_tokens`` cap for ``tenant`` among the ``limits`` policies whose
        decision in ``decisions`` was enforced (a shadow-mode or flag-disabled policy caps
        nothing); None when none applies."""
        if not self._limits:
            return None
        caps = [
            c
            for d in decisions
            if d.enforced
            and (policy := self._limits.get(d.policy)) is not None
            and (c := policy.caps_for(tenant).max_tokens) is not None
        ]
        return min(caps, default=None)


def _has_token_cap(policy: LimitsPolicy) -> bool:
    return policy.default.max_tokens is not None or any(
        c.max_tokens is not None for c in policy.tenants.values()
    )
