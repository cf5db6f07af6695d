"""Alert lifecycle and cross-group dedupe: turns detector firings into anomalies an operator (and a
review queue) can act on. Pure and serialisable (``to_dict`` / ``from_dict``), kept in the engine
state so it survives a worker restart.

A window detector *fires* (returns an ``Alert``) each time its condition holds: a CUSUM crossing its
threshold again after its restart, an input-drift check failing again one window later, a canary
comparison still significant at its next look. One real shift therefore fires many times, in every
group it reaches (``all``, ``variant=``, ``model=``, ``tenant=``). ``AlertBook`` folds them:

* **Incident** (the anomaly that is emitted): one per *family* = (statistic, detector signal,
  direction), across groups: a shift seen in ``all`` and in ``tenant=t1`` is one incident whose
  ``groups`` lists both, the most specific explaining group first (see ``ordered_members``).
  Canary-vs-control comparisons (statistic ``msprt_log_lr``) are never merged across groups: the
  family includes the comparison's group (variant, control, model, tenant), so every canary keeps
  its own anomaly for rollout gating.
* **Member** (the lifecycle per (detector, signal, group)): OPENS at the group's first firing; later
  firings update it (``count``, ``last_seen``, the current ``value`` / ``effect`` / ``p_value``);
  it CLOSES when its group has seen ``LifecycleConfig.resolve_after`` requests without a firing.
  The incident RESOLVES when its last member closes. A firing after that opens a new incident,
  which is emitted as a new anomaly.

``drain()`` returns the lifecycle events since the last drain, in order: ``open`` (a new anomaly;
its ``anomaly`` field is the bundle to write to the anomalies stream), ``update`` (a group joined or
re-opened, or the severity rose) and ``resolve``. Incidents opened since the last drain are emitted
once, with every group that fired before the drain (the worker drains once per batch, so the
grouping window is one batch and adds no delay).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from detectors.drift import Alert

COMPARISON_STATISTIC = "msprt_log_lr"
"""The canary-vs-control statistic: its incidents stay per comparison group (never merged)."""


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    """Alert lifecycle settings (``detectors.alerts`` in the YAML config).

    ``resolve_after``: requests of the alert's own group (for a canary comparison: requests of
    that canary) without a firing after which a member closes; it must exceed the interval at
    which a persisting condition fires again (input drift: one window, 300; a CUSUM on a shift
    near its floor: up to ~1,600 requests), else one shift resolves and re-opens.
    ``keep_resolved``: resolved incidents kept in the state for ``GET /v1/detectors``."""

    resolve_after: int = 2000
    keep_resolved: int = 20

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> LifecycleConfig:
        """From the ``detectors.alerts`` mapping; unknown keys raise ``TypeError``, values that are
        not integers ``ValueError``."""
        return cls(**{k: int(v) for k, v in dict(cfg or {}).items()})


def group_key(group: Mapping[str, str]) -> str:
    """``all`` or ``k=v|k=v`` sorted by name (the engine's group key)."""
    return "|".join(f"{k}={v}" for k, v in sorted(group.items())) or "all"


def family_key(alert: Alert) -> str:
    """The incident family of a firing: ``statistic|detector|direction``, plus the group for a
    canary-vs-control comparison."""
    base = f"{alert.statistic}|{alert.detector}|{alert.direction}"
    if alert.statistic == COMPARISON_STATISTIC:
        return f"{base}|{group_key(alert.group)}"
    return base


def strength(alert: Alert) -> float:
    """The effect in units of its practical floor, measured from "no change" (0 for rates, PSI and
    Wasserstein distances; 1 for length ratios; 0.5 for a domain-classifier AUC). >= 1 at any
    firing; used to rank the groups of an incident."""
    if alert.statistic == "roc_auc":
        neutral = 0.5
    elif alert.statistic in ("cusum", COMPARISON_STATISTIC) and alert.effect_floor > 1.0:
        neutral = 1.0
    else:
        neutral = 0.0
    return abs(alert.effect - neutral) / max(abs(alert.effect_floor - neutral), 1e-9)


@dataclass(slots=True)
class Member:
    """The lifecycle of one (detector, signal, group). ``*_n`` are request counts of the group."""

    key: str
    group: dict[str, str]
    open: bool
    count: int
    opened_n: int
    last_fire_n: int
    first_seen_id: str
    first_seen_ms: int
    last_seen_id: str
    last_seen_ms: int
    value: float
    effect: float
    p_value: float | None
    severity: str
    strength: float
    bundle: dict[str, Any] = field(default_factory=dict)
    """The Alert of the member's first firing (the anomaly record when it is the representative)."""

    @classmethod
    def of(cls, alert: Alert, key: str, n: int) -> Member:
        return cls(
            key=key,
            group=dict(alert.group),
            open=True,
            count=1,
            opened_n=n,
            last_fire_n=n,
            first_seen_id=alert.window_end_id,
            first_seen_ms=alert.window_end_ms,
            last_seen_id=alert.window_end_id,
            last_seen_ms=alert.window_end_ms,
            value=alert.value,
            effect=alert.effect,
            p_value=alert.p_value,
            severity=alert.severity,
            strength=round(strength(alert), 4),
            bundle=alert.to_dict(),
        )

    def fire(self, alert: Alert, n: int) -> bool:
        """Record a later firing; True when the member re-opened."""
        reopened = not self.open
        self.open = True
        self.count += 1
        self.last_fire_n = n
        self.last_seen_id, self.last_seen_ms = alert.window_end_id, alert.window_end_ms
        self.value, self.effect, self.p_value = alert.value, alert.effect, alert.p_value
        self.strength = round(strength(alert), 4)
        if alert.severity == "high":
            self.severity = "high"
        return reopened


@dataclass(slots=True)
class Incident:
    """One anomaly: a family of firings across groups, open until every member closed."""

    id: str
    family: str
    detector: str
    statistic: str
    direction: str
    status: str
    members: dict[str, Member]
    emitted: bool = False
    changed: bool = False
    emitted_severity: str = "medium"

    @property
    def count(self) -> int:
        return sum(m.count for m in self.members.values())

    @property
    def severity(self) -> str:
        return "high" if any(m.severity == "high" for m in self.members.values()) else "medium"

    def ordered_members(self) -> list[Member]:
        """Groups, most specific explaining group first: narrower groups (variant / model /
        tenant / comparison) whose effect is at least the ``all`` group's (the shift is as strong
        or stronger there) by decreasing strength, then the other narrower groups, then ``all``."""
        all_m = self.members.get("all")
        floor = all_m.strength if all_m is not None else 0.0
        narrow = [m for m in self.members.values() if m.key != "all"]
        narrow.sort(key=lambda m: (m.strength < floor, -m.strength, m.key))
        return narrow + ([all_m] if all_m is not None else [])

    def event(self, kind: str) -> dict[str, Any]:
        """A lifecycle event record (JSON-ready); ``open`` events carry the anomaly bundle."""
        members = self.ordered_members()
        first = min(members, key=lambda m: (m.first_seen_ms, m.opened_n))
        last = max(members, key=lambda m: (m.last_seen_ms, m.last_fire_n))
        rep = members[0]
        out: dict[str, Any] = {
            "event": kind,
            "id": self.id,
            "detector": self.detector,
            "statistic": self.statistic,
            "direction": self.direction,
            "status": self.status,
            "severity": self.severity,
            "groups": [m.group for m in members],
            "group_keys": [m.key for m in members],
            "open_groups": [m.key for m in members if m.open],
            "count": self.count,
            "first_seen_id": first.first_seen_id,
            "first_seen_ms": first.first_seen_ms,
            "last_seen_id": last.last_seen_id,
            "last_seen_ms": last.last_seen_ms,
            "value": rep.value,
            "effect": rep.effect,
            "p_value": rep.p_value,
        }
        if kind == "open":
            out["anomaly"] = self.anomaly(members)
        return out

    def anomaly(self, members: list[Member]) -> dict[str, Any]:
        """The anomaly record: the representative (first-listed) group's ``Alert.to_dict()`` fields
        unchanged, plus ``id`` (stable per incident), ``groups`` / ``group_keys`` (ordered),
        ``status``, ``count``, ``first_seen_ms`` / ``last_seen_ms``, the representative group's
        ``variant`` / ``model`` / ``tenant`` at the top level and ``exemplar_ids`` (current then
        reference), the fields review routing reads."""
        rep = members[0]
        bundle = dict(rep.bundle)
        bundle.update(
            id=self.id,
            groups=[m.group for m in members],
            group_keys=[m.key for m in members],
            status=self.status,
            count=self.count,
            severity=self.severity,
            first_seen_ms=min(m.first_seen_ms for m in members),
            last_seen_ms=max(m.last_seen_ms for m in members),
            exemplar_ids=[
                *bundle.get("exemplars_current", []),
                *bundle.get("exemplars_reference", []),
            ],
        )
        for k in ("variant", "model", "tenant"):
            if k in rep.group:
                bundle[k] = rep.group[k]
        return bundle

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["members"] = {k: asdict(m) for k, m in self.members.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Incident:
        members = {k: Member(**m) for k, m in d["members"].items()}
        return cls(**{**d, "members": members})


class AlertBook:
    """Open incidents, per-group request counts and undrained events; see the module docstring."""

    def __init__(self, config: LifecycleConfig | None = None) -> None:
        self.config = config or LifecycleConfig()
        self.open: dict[str, Incident] = {}
        self.resolved: deque[dict[str, Any]] = deque(maxlen=self.config.keep_resolved)
        self.counts: dict[str, int] = {}
        self.pending: list[dict[str, Any]] = []
        self.opened = 0
        self._by_group: dict[str, set[str]] = {}

    def tick(self, key: str) -> None:
        """One request of group ``key``: count it and close the group's members that have been
        quiet for ``resolve_after`` of its requests (resolving incidents left without an open
        member)."""
        n = self.counts.get(key, 0) + 1
        self.counts[key] = n
        for fam in list(self._by_group.get(key, ())):
            inc = self.open[fam]
            m = inc.members[key]
            if m.open and n - m.last_fire_n >= self.config.resolve_after:
                m.open = False
                inc.changed = True
                if not any(x.open for x in inc.members.values()):
                    self._resolve(inc)

    def fire(self, alert: Alert) -> Incident:
        """Record one firing; returns the incident it opened or joined."""
        key = group_key(alert.group)
        n = self.counts.get(key, 0)
        fam = family_key(alert)
        inc = self.open.get(fam)
        if inc is None:
            self.opened += 1
            digest = hashlib.sha256(fam.encode()).hexdigest()[:10]
            inc = Incident(
                id=f"anm-{digest}-{alert.window_end_ms}-{self.opened}",
                family=fam,
                detector=alert.detector,
                statistic=alert.statistic,
                direction=alert.direction,
                status="open",
                members={},
            )
            self.open[fam] = inc
        m = inc.members.get(key)
        if m is None:
            inc.members[key] = Member.of(alert, key, n)
            self._by_group.setdefault(key, set()).add(fam)
            inc.changed = True
        elif m.fire(alert, n):
            inc.changed = True
        return inc

    def _resolve(self, inc: Incident) -> None:
        if not inc.emitted:  # opened and resolved between two drains: still one anomaly
            inc.emitted = True
            self.pending.append(inc.event("open"))
        inc.status = "resolved"
        del self.open[inc.family]
        for key in inc.members:
            fams = self._by_group.get(key)
            if fams is not None:
                fams.discard(inc.family)
        self.pending.append(inc.event("resolve"))
        summary = inc.event("resolve")
        summary.pop("event")
        self.resolved.append(summary)

    def drain(self) -> list[dict[str, Any]]:
        """Lifecycle events since the last drain (see the module docstring), oldest first."""
        events = self.pending
        self.pending = []
        for inc in self.open.values():
            if not inc.emitted:
                inc.emitted = True
                inc.emitted_severity = inc.severity
                events.append(inc.event("open"))
            elif inc.changed or inc.severity != inc.emitted_severity:
                inc.emitted_severity = inc.severity
                events.append(inc.event("update"))
            inc.changed = False
        return events

    def summary(self) -> dict[str, Any]:
        """Open and recently resolved incidents (no anomaly bundles), for ``GET /v1/detectors``."""
        open_ = []
        for inc in self.open.values():
            ev = inc.event("update")
            ev.pop("event")
            open_.append(ev)
        return {"open": open_, "resolved": list(self.resolved), "opened_total": self.opened}

    def to_dict(self) -> dict[str, Any]:
        return {
            "open": {k: inc.to_dict() for k, inc in self.open.items()},
            "resolved": list(self.resolved),
            "counts": dict(self.counts),
            "pending": list(self.pending),
            "opened": self.opened,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], config: LifecycleConfig | None = None) -> AlertBook:
        b = cls(config)
        b.open = {k: Incident.from_dict(v) for k, v in d.get("open", {}).items()}
        b.resolved.extend(d.get("resolved", []))
        b.counts = {str(k): int(v) for k, v in d.get("counts", {}).items()}
        b.pending = list(d.get("pending", []))
        b.opened = int(d.get("opened", 0))
        for fam, inc in b.open.items():
            for key in inc.members:
                b._by_group.setdefault(key, set()).add(fam)
        return b
