"""Per-deployment ``rpm`` / ``tpm`` (``model_list[].litellm_params``, LiteLLM's names), honoured by
the router: a deployment at its limit is skipped for the next of its alias (round-robin order);
when every deployment of the alias is at its limit the attempt fails with ``DeploymentsAtLimit``
(an ``UpstreamRateLimited``: 429 with ``Retry-After``, the soonest a deployment has room) and the
alias's fallbacks are tried, as LiteLLM's router skips deployments over their limits before the
call. A request refused so spends none of its caller's budget (``gateway.ratelimit.settle``).

Counted with ``gateway.ratelimit.RateLimits`` (``scope`` ``deployment``, name ``alias#index``): in
the shared store when the gateway runs (every process spends one budget), in process memory when
the router is built alone. Requests are counted when a deployment is picked for an attempt;
tokens (``usage.total_tokens``) once its reply is over. No deployment with ``rpm``/``tpm``: no
work on the hot path (``DeploymentLimits.metered`` is empty).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway.ratelimit import DeploymentsAtLimit, RateLimits, usage_tokens
from gateway.upstream.errors import AttemptFailed
from gateway.upstream.transports import Deployment
from rollguard.errors import RateLimited
from rollguard.ratelimit_settings import Limit
from rollguard.settings import RollguardSettings


def deployment_budgets(settings: RollguardSettings) -> dict[str, Limit]:
    """``alias#index`` -> the ``rpm``/``tpm`` of each ``model_list`` entry that sets one."""
    out: dict[str, Limit] = {}
    for i, entry in enumerate(settings.model_list):
        p = entry.litellm_params
        if p.get("rpm") or p.get("tpm"):
            out[f"{entry.model_name}#{i}"] = Limit(rpm=p.get("rpm"), tpm=p.get("tpm"))
    return out


Charge = Callable[[Deployment, Mapping[str, Any] | None], Awaitable[None]]
"""``DeploymentLimits.charge``'s signature (a stream calls it at its end)."""


class DeploymentLimits:
    """The router's view of the per-deployment budgets of ``deployments`` (alias -> list)."""

    @classmethod
    def of(
        cls,
        settings: RollguardSettings,
        limits: RateLimits | None,
        deployments: Mapping[str, list[Deployment]],
    ) -> DeploymentLimits:
        """The budgets of ``settings``' deployments counted by ``limits`` (the gateway's, on the
        store); None: in this process's memory when any deployment has a budget."""
        budgets = deployment_budgets(settings)
        if limits is None and budgets:
            limits = RateLimits.in_memory(budgets)
        return cls(limits, deployments)

    def __init__(self, limits: RateLimits | None, deployments: Mapping[str, list[Deployment]]) -> None:
        self._limits = limits or RateLimits.disabled()
        self.metered = frozenset(
            alias
            for alias, deps in deployments.items()
            if any(self._limits.deployment(d.budget_name) is not None for d in deps)
        )
        """Aliases with at least one deployment under a budget."""

    async def pick(self, deps: list[Deployment], first: Deployment) -> Deployment:
        """``first`` if its budget has room (the request is counted), else the next of ``deps``
        that has. Raises ``AttemptFailed`` (``UpstreamRateLimited``, not retried, fallbacks
        tried) when none has room."""
        start = next((i for i, d in enumerate(deps) if d is first), 0)
        soonest = math.inf
        for k in range(len(deps)):
            dep = deps[(start + k) % len(deps)]
            ticket = self._limits.deployment(dep.budget_name)
            if ticket is None:
                return dep
            try:
                await self._limits.admit(ticket)
            except RateLimited as exc:
                soonest = min(soonest, exc.retry_after)
                continue
            return dep
        error = DeploymentsAtLimit(
            f"every deployment of model {first.alias!r} is at its rpm/tpm limit; try again later"
        )
        error.retry_after = soonest
        raise AttemptFailed(error, retryable=False, fallback=True)

    async def charge(self, dep: Deployment, usage: Mapping[str, Any] | None) -> None:
        """Charge a finished reply's tokens to ``dep``'s token budget (if it has one)."""
        ticket = self._limits.deployment(dep.budget_name)
        if ticket is not None and usage:
            await self._limits.charge(ticket, usage_tokens(dict(usage)))
