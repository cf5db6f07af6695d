"""The ``rollouts`` section of the config (``RollguardSettings.rollouts``): the rollout controller's
options and the configured rollout plans, typed and validated when the settings load.

Shape (YAML)::

    rollouts:
      controller:
        enabled: true          # run the controller loop in the gateway (one replica acts: a lease)
        interval_s: 5          # seconds between two looks at the running rollouts
        lease_ms: 15000        # a silent controller loses the lease after this long
      unleash_admin:           # set the steps through the Unleash Admin API (else: store override)
        url: http://unleash:4242/api      # default: flags.unleash_url
        token: os.environ/UNLEASH_ADMIN_TOKEN
        project: default
        environment: null      # default: flags.environment
      review_queue: rollouts   # where breach items go (P1 rollback, P2 pause)
      webhook_url: null        # a rollback is POSTed here (JSON) when set
      plans:
        chat-v2:               # the rollout id
          flag: model-rollout
          subject: {kind: model, control: chat-v1, canary: chat-v2}
          steps: [1, 5, 25, 50, 100]
          metrics: [...]       # see rollguard.rollout

Errors: ``load_settings`` raises ``ConfigError`` with one line naming the field
(``rollouts.plans.chat-v2.steps: steps must be strictly increasing ...``). Names only the whole
config knows (flag, model alias, policy) are checked by ``gateway.config_check``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rollguard.rollout import RolloutPlan

ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ControllerSettings(_Strict):
    enabled: bool = True
    interval_s: float = Field(default=5.0, ge=0.1, le=3600, description="seconds between looks")
    lease_ms: int = Field(default=15_000, ge=500, description="ms a silent controller keeps the lease")


class UnleashAdminSettings(_Strict):
    """The Unleash Admin API the controller sets step percentages through (unset ``token``: the
    store-backed override is used instead)."""

    url: str | None = Field(default=None, description="admin API base; default flags.unleash_url")
    token: str | None = Field(default=None, description="admin token (os.environ/NAME allowed)")
    project: str = "default"
    environment: str | None = Field(default=None, description="default flags.environment")

    @field_validator("url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {v!r}")
        return v


class RolloutsSettings(_Strict):
    controller: ControllerSettings = Field(default_factory=ControllerSettings)
    unleash_admin: UnleashAdminSettings = Field(default_factory=UnleashAdminSettings)
    review_queue: str = Field(default="rollouts", pattern=ID_PATTERN)
    webhook_url: str | None = None
    plans: dict[str, RolloutPlan] = Field(default_factory=dict)

    @field_validator("plans")
    @classmethod
    def _ids(cls, v: dict[str, RolloutPlan]) -> dict[str, RolloutPlan]:
        import re

        for rid in v:
            if not re.match(ID_PATTERN, rid):
                raise ValueError(f"rollout id {rid!r}: letters, digits, '_', '.', '-' only")
        return v

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {v!r}")
        return v
