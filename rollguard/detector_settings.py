"""The ``detectors`` section of the config (``RollguardSettings.detectors``): the window-detector
engine's sizes, its practical floors and alert lifecycle, and the detector worker's knobs. Typed and
validated when the settings load, like every other section; read by ``rollguard worker``.

Types are checked here (unknown keys, values that are not numbers); every field is optional: an
unset field keeps the default of the class that uses it
(``detectors.engine.EngineConfig``, ``detectors.drift.Floors``, ``detectors.alerts.LifecycleConfig``,
``gateway.worker.WorkerOptions``), so each default is written once, there. Shape (YAML)::

    detectors:
      reference_size: 2000        # observations in each output-drift reference
      input_window: 300
      group_by: [all, variant, model, tenant]
      floors: {rate_delta: 0.02, psi: 0.2, arl0: 1.0e7}
      alerts: {resolve_after: 2000, keep_resolved: 20}
      worker: {group: detectors, batch: 100, idle_exit_s: null}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def given(self) -> dict[str, Any]:
        """The fields the config set (unset ones keep the using class's default)."""
        return self.model_dump(exclude_unset=True)


class FloorSettings(_Section):
    """``detectors.floors``: practical effect floors and significance (``detectors.drift.Floors``)."""

    rate_delta: float | None = Field(default=None, description="absolute rate change (0.02)")
    length_ratio: float | None = Field(default=None, description="reply-length ratio (1.15)")
    psi: float | None = Field(default=None, description="population stability index (0.2)")
    auc: float | None = Field(default=None, description="domain-classifier ROC AUC")
    wasserstein_sd: float | None = Field(default=None, description="in reference SDs")
    min_sample: int | None = Field(default=None, description="observations before any alert")
    alpha: float | None = None
    comparison_alpha: float | None = None
    arl0: float | None = Field(default=None, description="in-control run length, observations")


class AlertSettings(_Section):
    """``detectors.alerts``: the alert lifecycle (``detectors.alerts.LifecycleConfig``)."""

    resolve_after: int | None = Field(default=None, description="requests without a firing")
    keep_resolved: int | None = None


class WorkerSettings(_Section):
    """``detectors.worker``: the detector worker's knobs (``gateway.worker.WorkerOptions``)."""

    group: str | None = Field(default=None, description="consumer group name")
    batch: int | None = None
    block_ms: int | None = None
    claim_idle_ms: int | None = None
    signals_maxlen: int | None = None
    seen_retention_ms: int | None = Field(default=None, description="0 = forever")
    forget_idle_ms: int | None = Field(default=None, description="0 = never forget idle consumers")
    idle_exit_s: float | None = Field(default=None, description="None = run until stopped")


class DetectorSettings(_Section):
    """The whole ``detectors`` section (see the module docstring)."""

    reference_size: int | None = None
    input_reference_size: int | None = None
    input_window: int | None = None
    input_check_every: int | None = None
    compare_every: int | None = None
    control_variant: str | None = None
    group_by: list[str] | None = None
    input_group_by: list[str] | None = None
    rolling_reference: bool | None = None
    floors: FloorSettings = Field(default_factory=FloorSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)

    @field_validator("floors", "alerts", "worker", mode="before")
    @classmethod
    def _null_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v

    def engine(self) -> dict[str, Any]:
        """The mapping ``detectors.engine.EngineConfig.from_config`` takes: the given fields, with
        ``floors`` and ``alerts`` nested."""
        out = self.model_dump(exclude_unset=True, exclude={"floors", "alerts", "worker"})
        out["floors"] = self.floors.given()
        out["alerts"] = self.alerts.given()
        return out

    def worker_options(self) -> dict[str, Any]:
        """The keyword arguments of ``gateway.worker.WorkerOptions`` the config gave."""
        return self.worker.given()
