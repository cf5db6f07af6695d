"""The window-detector engine: turns interaction records plus their shortcut signals into
observations and feeds every window detector, per group, as well as over time. Pure and
serialisable (``to_dict`` / ``from_dict``) so a worker can keep the whole state in Redis.

Groups: ``all`` (over time), ``variant=<v>``, ``model=<m>``, ``tenant=<t>`` each get output-drift
CUSUMs and input drift; every non-control variant gets a ``VariantComparison`` per metric against
the control variant, per (model, tenant).

Metrics (``OUTPUT_METRICS``): the flag rate of every shortcut detector, ``reply_log_chars``
(log of completion characters), ``blocked`` (final verdict block) and ``error`` (status >= 500 or
an error code).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors import features as F
from detectors.alerts import AlertBook, LifecycleConfig
from detectors.canary import VariantComparison
from detectors.drift import Alert, CusumMonitor, Floors, InputDrift, InputItem
from detectors.shortcuts import DETECTORS
from rollguard.types import Signal, text_of

OUTPUT_METRICS: tuple[tuple[str, str], ...] = (
    *((d, "rate") for d in DETECTORS),
    ("reply_log_chars", "log_length"),
    ("blocked", "rate"),
    ("error", "rate"),
)


@dataclass(slots=True)
class Observation:
    """One interaction as the window detectors see it."""

    id: str
    ts_ms: int
    variant: str
    model: str
    tenant: str
    metrics: dict[str, float]
    input: InputItem


def observation(record: Mapping[str, Any], signals: Mapping[str, Signal], topic_cluster: int) -> Observation:
    """Build an ``Observation`` from an interaction record (``Interaction.to_record()`` shape) and
    its shortcut signals. ``topic_cluster`` is the prompt's reference cluster id."""
    messages = list(record.get("messages") or [])
    prompt = F.last_user_text(messages)
    completion = str(record.get("completion") or "")
    metrics = {name: (1.0 if signals[name].flagged else 0.0) for name in DETECTORS if name in signals}
    metrics["reply_log_chars"] = math.log(max(len(completion), 1))
    metrics["blocked"] = 1.0 if record.get("verdict") == "block" else 0.0
    status = int(record.get("status") or 200)
    metrics["error"] = 1.0 if status >= 500 or (record.get("error_code") and status >= 400) else 0.0
    meta = record.get("metadata") or {}
    ascii_share = sum(1 for ch in prompt if ord(ch) < 128) / max(len(prompt), 1)
    item = InputItem(
        id=str(record.get("id", "")),
        ts_ms=int(record.get("created_ms") or 0),
        text=prompt,
        categorical={
            "topic_cluster": str(topic_cluster),
            "tenant": str(record.get("tenant") or ""),
            "tool_use": "yes"
            if record.get("tool_calls") or any(m.get("role") == "tool" for m in messages)
            else "no",
            "language": "latin" if ascii_share >= 0.9 else "other",
        },
        numeric={
            "prompt_log_chars": math.log(max(len(prompt), 1)),
            "turns": float(sum(1 for m in messages if m.get("role") == "user")),
        },
    )
    return Observation(
        id=item.id,
        ts_ms=item.ts_ms,
        variant=str(meta.get("variant") or "control"),
        model=str(record.get("model") or ""),
        tenant=str(record.get("tenant") or ""),
        metrics=metrics,
        input=item,
    )


def prompt_of(record: Mapping[str, Any]) -> str:
    """The last user message text of a record."""
    for m in reversed(list(record.get("messages") or [])):
        if isinstance(m, dict) and m.get("role") == "user":
            return text_of(m.get("content"))
    return ""


@dataclass(slots=True)
class EngineConfig:
    """Sizes of the window detectors (all configurable from ``detectors:`` in the YAML config)."""

    floors: Floors = field(default_factory=Floors)
    reference_size: int = 2000
    input_reference_size: int = 1000
    input_window: int = 300
    input_check_every: int = 100
    compare_every: int = 10
    control_variant: str = "control"
    group_by: tuple[str, ...] = ("all", "variant", "model", "tenant")
    input_group_by: tuple[str, ...] = ("all", "variant")
    rolling_reference: bool = False
    alerts: LifecycleConfig = field(default_factory=LifecycleConfig)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> EngineConfig:
        """From the ``detectors`` config mapping; ``floors`` and ``alerts`` are nested mappings (see
        ``Floors``, ``LifecycleConfig``)."""
        cfg = dict(cfg or {})
        floors = Floors.from_config(cfg.pop("floors", None))
        alerts = LifecycleConfig.from_config(cfg.pop("alerts", None))
        for key in ("group_by", "input_group_by"):
            if key in cfg:
                cfg[key] = tuple(cfg[key])
        for key in (
            "reference_size",
            "input_reference_size",
            "input_window",
            "input_check_every",
            "compare_every",
        ):
            if key in cfg:
                cfg[key] = int(cfg[key])
        return cls(floors=floors, alerts=alerts, **cfg)


class WindowEngine:
    """All window detectors for a stream of observations, and the alert lifecycle over their
    firings (``book``, see ``detectors.alerts``): ``update`` returns the raw firings, ``drain``
    the lifecycle events (``open`` = a new anomaly, ``update``, ``resolve``)."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.monitors: dict[str, dict[str, CusumMonitor]] = {}
        self.inputs: dict[str, InputDrift] = {}
        self.comparisons: dict[str, dict[str, VariantComparison]] = {}
        self.book = AlertBook(self.config.alerts)
        self.n = 0

    @staticmethod
    def _groups(obs: Observation, keys: Iterable[str]) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for k in keys:
            if k == "all":
                out.append({})
            elif k == "variant":
                out.append({"variant": obs.variant})
            elif k == "model":
                out.append({"model": obs.model})
            elif k == "tenant":
                out.append({"tenant": obs.tenant})
        return out

    @staticmethod
    def key(group: Mapping[str, str]) -> str:
        """The group's state key: ``all`` or ``k=v|k=v`` sorted by name."""
        return "|".join(f"{k}={v}" for k, v in sorted(group.items())) or "all"

    def update(self, obs: Observation) -> list[Alert]:
        """Feed one observation to every detector of its groups; returns the firings (each is also
        recorded in the alert lifecycle, whose events ``drain`` returns)."""
        cfg = self.config
        self.n += 1
        alerts: list[Alert] = []
        ticked = {self.key(g) for g in self._groups(obs, (*cfg.group_by, *cfg.input_group_by))}
        if obs.variant != cfg.control_variant:
            compared = {"model": obs.model, "tenant": obs.tenant, "variant": obs.variant}
            ticked.add(self.key({**compared, "control": cfg.control_variant}))
        for key in sorted(ticked):
            self.book.tick(key)
        for group in self._groups(obs, cfg.group_by):
            key = self.key(group)
            mons = self.monitors.get(key)
            if mons is None:
                mons = {
                    name: CusumMonitor(
                        name, kind, cfg.floors, cfg.reference_size, rolling=cfg.rolling_reference
                    )
                    for name, kind in OUTPUT_METRICS
                }
                self.monitors[key] = mons
            for name, mon in mons.items():
                if name in obs.metrics:
                    a = mon.update(obs.metrics[name], obs.id, obs.ts_ms, group)
                    if a is not None:
                        alerts.append(a)
        for group in self._groups(obs, cfg.input_group_by):
            key = self.key(group)
            drift = self.inputs.get(key)
            if drift is None:
                drift = InputDrift(
                    cfg.floors, cfg.input_reference_size, cfg.input_window, cfg.input_check_every
                )
                self.inputs[key] = drift
            alerts.extend(drift.update(obs.input, group))
        if obs.variant != cfg.control_variant or self.comparisons:
            alerts.extend(self._compare(obs))
        for a in alerts:
            self.book.fire(a)
        return alerts

    def drain(self) -> list[dict[str, Any]]:
        """The alert lifecycle events since the last call (``AlertBook.drain``); an ``open`` event's
        ``anomaly`` is the record for the anomalies stream. The worker drains once per batch."""
        return self.book.drain()

    def _compare(self, obs: Observation) -> list[Alert]:
        cfg = self.config
        alerts = []
        base = {"model": obs.model, "tenant": obs.tenant}
        if obs.variant != cfg.control_variant:
            key = self.key({**base, "variant": obs.variant})
            if key not in self.comparisons:
                self.comparisons[key] = {
                    name: VariantComparison(
                        name, kind, cfg.floors, obs.variant, cfg.control_variant, cfg.compare_every
                    )
                    for name, kind in OUTPUT_METRICS
                }
            targets = [key]
        else:
            prefix = self.key(base) + "|variant="
            targets = [k for k in self.comparisons if k.startswith(prefix)]
        for key in targets:
            for name, comp in self.comparisons[key].items():
                if name in obs.metrics:
                    a = comp.update(obs.variant, obs.metrics[name], obs.id, obs.ts_ms, base)
                    if a is not None:
                        alerts.append(a)
        return alerts

    def summary(self) -> dict[str, Any]:
        """Current state per detector and group, for ``GET /v1/detectors``: CUSUM statistics and
        thresholds, input-drift null calibration, and every variant comparison."""
        return {
            "observations": self.n,
            "output": {
                key: {
                    name: {
                        "calibrated": m.calibrated,
                        "reference_mean": round(m.mu, 6),
                        "cusum_up": round(m.s_hi, 4),
                        "cusum_down": round(m.s_lo, 4),
                        "threshold": None if not math.isfinite(m.h) else round(m.h, 4),
                        "n": m.n,
                        "alerts": m.alerts,
                    }
                    for name, m in mons.items()
                }
                for key, mons in self.monitors.items()
            },
            "input": {
                key: {
                    "calibrated": d.calibrated,
                    "auc_threshold": round(d.auc_threshold, 4),
                    "n": d.n,
                    "alerts": d.alerts,
                }
                for key, d in self.inputs.items()
            },
            "comparisons": {
                key: [c.summary() for c in comps.values()] for key, comps in self.comparisons.items()
            },
            "alerts": self.book.summary(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "monitors": {k: {n: m.to_dict() for n, m in mons.items()} for k, mons in self.monitors.items()},
            "inputs": {k: d.to_dict() for k, d in self.inputs.items()},
            "comparisons": {k: {n: c.to_dict() for n, c in cs.items()} for k, cs in self.comparisons.items()},
            "alerts": self.book.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], config: EngineConfig | None = None) -> WindowEngine:
        e = cls(config)
        f = e.config.floors
        e.n = int(d.get("n", 0))
        e.monitors = {
            k: {n: CusumMonitor.from_dict(m, f) for n, m in mons.items()}
            for k, mons in d.get("monitors", {}).items()
        }
        e.inputs = {k: InputDrift.from_dict(v, f) for k, v in d.get("inputs", {}).items()}
        e.comparisons = {
            k: {n: VariantComparison.from_dict(c, f) for n, c in cs.items()}
            for k, cs in d.get("comparisons", {}).items()
        }
        e.book = AlertBook.from_dict(d.get("alerts", {}), e.config.alerts)
        return e
