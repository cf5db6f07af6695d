"""Per-tenant settings (``tenants.<t>``) applied to the parts that enforce them.

Limits: every ``limits`` policy gets the tenants' caps merged over its own ``params``
(``with_tenant_limits``), so ``tenants.acme.max_messages: 1`` blocks a 2-message request from
``acme`` with the same policy, verdict and audit trail as a cap set in the policy's params.
Precedence, highest first: ``tenants.<t>.<cap>``, the policy's ``params.tenants.<t>.<cap>``,
``tenants.default.<cap>``, the policy's ``params.<cap>``, the policy's built-in default.

Retention (``tenants.<t>.retention_ms``) is applied by the store (``gateway.store.tenant_retention``);
raw-content consent (``raw_content_opt_in``) by the audit trail and the review service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rollguard.settings import DEFAULT_TENANT, PolicySpec, TenantSettings

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
