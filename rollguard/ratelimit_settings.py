"""The ``rate_limits`` section: requests and tokens per minute, per app key and per tenant.

::

    rate_limits:
      tenants:
        acme: {rpm: 600, tpm: 200000}
        default: {rpm: 60}          # each tenant without an entry: its own 60 rpm
      keys:                         # by ``gateway.api_keys[].name``
        ci-bot: {rpm: 30, tpm: 20000}

Unset (the default): no limits and no store round trip per request. Counted in the shared store
(``store.redis_url`` or the embedded Valkey), so every gateway process of one deployment enforces
one budget. How they are counted (windows, Retry-After, store down) is in
``gateway.ratelimit``; the key names are checked against ``gateway.api_keys`` by
``gateway.config_check``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Limit(BaseModel):
    """One budget: ``rpm`` requests and ``tpm`` tokens (prompt + completion, as the upstream's
    ``usage.total_tokens`` reports them) per minute; None: that one is not limited."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rpm: int | None = Field(default=None, ge=1, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="tokens per minute")

    @model_validator(mode="after")
    def _some(self) -> Limit:
        if self.rpm is None and self.tpm is None:
            raise ValueError("give rpm, tpm or both (requests / tokens per minute)")
        return self


class RateLimitSettings(BaseModel):
    """Per-tenant (``tenants``; the ``default`` entry is the size of the budget each tenant without
    an entry of its own gets, counted per tenant, not shared) and per-key
    (``keys``: the ``name`` of a ``gateway.api_keys`` entry) budgets. A request must fit every
    budget that applies to it: its tenant's and its key's."""

    model_config = ConfigDict(extra="forbid")
    tenants: dict[str, Limit] = Field(default_factory=dict)
    keys: dict[str, Limit] = Field(default_factory=dict)
    key_prefix: str = Field(
        default="rollguard:ratelimit", min_length=1, description="prefix of the counters' store keys"
    )
    store_timeout_ms: float = Field(
        default=250.0, gt=0, description="ms; a slower store is treated as down (fail open)"
    )

    @property
    def enabled(self) -> bool:
        """True when any budget is configured."""
        return bool(self.tenants or self.keys)

    def for_tenant(self, tenant: str) -> Limit | None:
        """The size of the tenant's budget: its entry, else the ``default`` entry, else None."""
        return self.tenants.get(tenant) or self.tenants.get("default")
