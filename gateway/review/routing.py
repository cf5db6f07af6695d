"""Routing: a flagged interaction record or an anomaly bundle -> review items in named queues.

Pure functions of the record and the ``ReviewSettings`` (no I/O). Every rule that matches routes
the source to its queue; one item per (source, queue) with the most urgent priority among the
matching rules. A source no rule matches goes to ``review.default_queue`` (interactions at P2,
anomalies at the priority their severity implies). The queue store dedups per (source, queue).

The record is the gateway's audit record (``Interaction.to_record()``), already redacted unless
the tenant opted in to raw content (``gateway/audit.py``); routing copies content, never adds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.review.config import Priority, ReviewSettings, RouteRule
from gateway.review.queue import NewItem

SEVERITY_PRIORITY = {"critical": Priority.P1, "high": Priority.P1, "medium": Priority.P2, "low": Priority.P3}
"""Default priority of an anomaly by its severity (unknown -> P2)."""


@dataclass(frozen=True, slots=True)
class Facets:
    """What rules match on, extracted once from a source."""

    source: str
    tenant: str
    policies: frozenset[str]
    detectors: frozenset[str]
    severity: str | None
    variant: str | None


@dataclass(frozen=True, slots=True)
class Routed:
    """One destination: ``item`` goes to ``queue``."""

    queue: str
    item: NewItem


def interaction_facets(record: Mapping[str, Any]) -> Facets:
    """Facets of an interaction record: flagged decisions' policy ids, flagged signals' detector
    names, tenant and the model-rollout variant."""
    policies = frozenset(
        str(d.get("policy")) for d in record.get("decisions") or [] if d.get("verdict") == "flag"
    )
    signals = record.get("signals") or {}
    detectors = frozenset(
        str(name) for name, s in signals.items() if isinstance(s, Mapping) and s.get("flagged")
    )
    return Facets(
        source="interaction",
        tenant=str(record.get("tenant") or "default"),
        policies=policies,
        detectors=detectors,
        severity=record.get("severity"),
        variant=variant_of(record),
    )


def anomaly_facets(bundle: Mapping[str, Any]) -> Facets:
    """Facets of an anomaly bundle: its detector, severity, tenant and variant."""
    det = bundle.get("detector")
    return Facets(
        source="anomaly",
        tenant=str(bundle.get("tenant") or "default"),
        policies=frozenset(),
        detectors=frozenset([str(det)] if det else []),
        severity=str(bundle["severity"]).lower() if bundle.get("severity") else None,
        variant=bundle.get("variant"),
    )


def variant_of(record: Mapping[str, Any]) -> str | None:
    """The model-rollout variant of a record (``metadata.variant``), else None."""
    meta = record.get("metadata") or {}
    v = meta.get("variant") if isinstance(meta, Mapping) else None
    return str(v) if v else None


def rule_matches(rule: RouteRule, f: Facets) -> bool:
    """True when every field the rule gives matches (lists are "any of")."""
    checks: list[bool] = []
    if rule.source is not None:
        checks.append(f.source in rule.source)
    if rule.policy is not None:
        checks.append(bool(f.policies & set(rule.policy)))
    if rule.detector is not None:
        checks.append(bool(f.detectors & set(rule.detector)))
    if rule.severity is not None:
        checks.append(f.severity is not None and f.severity in {s.lower() for s in rule.severity})
    if rule.tenant is not None:
        checks.append(f.tenant in rule.tenant)
    if rule.variant is not None:
        checks.append(f.variant is not None and f.variant in rule.variant)
    return all(checks)


def destinations(settings: ReviewSettings, f: Facets, fallback: Priority) -> dict[str, Priority]:
    """queue -> priority for every matching rule (most urgent wins per queue); the default queue
    at ``fallback`` when nothing matches."""
    out: dict[str, Priority] = {}
    for rule in settings.routes:
        if rule_matches(rule, f):
            prev = out.get(rule.queue)
            if prev is None or rule.priority.rank < prev.rank:
                out[rule.queue] = rule.priority
    if not out:
        out[settings.default_queue] = fallback
    return out


def _deadlines(settings: ReviewSettings, priority: Priority, now_ms: int) -> tuple[int, int]:
    sla = settings.sla[priority]
    return now_ms + sla.claim_s * 1000, now_ms + sla.decide_s * 1000


def interaction_payload(record: Mapping[str, Any]) -> dict[str, Any]:
    """The item body shown to reviewers: conversation, completion, non-allow decisions, signals,
    flag variant, model and rollout step. Shapes follow ``Interaction.to_record()``."""
    meta = record.get("metadata") or {}
    return {
        "kind": "interaction",
        "interaction_id": record.get("id"),
        "created_ms": record.get("created_ms"),
        "tenant": record.get("tenant"),
        "model": record.get("model"),
        "upstream_model": record.get("upstream_model"),
        "variant": variant_of(record),
        "rollout_step": meta.get("rollout_step") if isinstance(meta, Mapping) else None,
        "flags": record.get("flags") or {},
        "messages": list(record.get("messages") or []),
        "completion": record.get("completion"),
        "tool_calls": list(record.get("tool_calls") or []),
        "finish_reason": record.get("finish_reason"),
        "decisions": [d for d in record.get("decisions") or [] if d.get("verdict") != "allow"],
        "signals": dict(record.get("signals") or {}),
    }


def route_interaction(settings: ReviewSettings, record: Mapping[str, Any], now_ms: int) -> list[Routed]:
    """Review items for a flagged interaction record (one per destination queue).

    Raises ``ValueError`` when the record has no ``id``."""
    if not record.get("id"):
        raise ValueError("interaction record without id")
    f = interaction_facets(record)
    payload = interaction_payload(record)
    out: list[Routed] = []
    for queue, prio in destinations(settings, f, Priority.P2).items():
        claim_by, decide_by = _deadlines(settings, prio, now_ms)
        item = NewItem(
            source="interaction",
            source_id=str(record["id"]),
            tenant=f.tenant,
            priority=prio,
            claim_by_ms=claim_by,
            decide_by_ms=decide_by,
            payload=payload,
            detectors=tuple(sorted(f.policies | f.detectors)),
            variant=f.variant,
            model=str(record.get("model") or "") or None,
        )
        out.append(Routed(queue, item))
    return out


ANOMALY_FIELDS = (
    "id",
    "detector",
    "statistic",
    "value",
    "threshold",
    "effect_size",
    "p_value",
    "arl",
    "window_start_ms",
    "window_end_ms",
    "variant",
    "model",
    "tenant",
    "severity",
    "created_ms",
    "reason",
)


SUMMARY_LIST_MAX = 20
"""Entries kept of a list field (affected groups, top features) in an anomaly summary."""


def _summary_value(v: Any) -> tuple[bool, Any]:
    """``(keep, value)``: scalars and None as they are; a mapping of scalars (a group); a list of
    scalars or such mappings, cut to ``SUMMARY_LIST_MAX`` entries. Anything deeper is dropped."""
    scalar = str | int | float | bool
    if v is None or isinstance(v, scalar):
        return True, v
    if isinstance(v, Mapping):
        flat = {str(k): x for k, x in v.items() if x is None or isinstance(x, scalar)}
        return bool(flat), flat
    if isinstance(v, list | tuple):
        kept = [x for x in (_summary_value(x) for x in v[:SUMMARY_LIST_MAX]) if x[0] and x[1] is not None]
        values = [x[1] for x in kept if not isinstance(x[1], list)]
        return bool(values), values
    return False, None


def anomaly_summary(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """What a reviewer sees of a bundle: the known fields first, then any other field that is a
    scalar, a flat mapping (a group) or a list of those (affected groups), lists cut to
    ``SUMMARY_LIST_MAX``. Exemplars are resolved and shown separately, never summarised."""
    out = {k: bundle.get(k) for k in ANOMALY_FIELDS if k in bundle}
    for k, v in bundle.items():
        if k in out or k.startswith("exemplar"):
            continue
        keep, value = _summary_value(v)
        if keep:
            out[k] = value
    return out


def exemplar_ids(bundle: Mapping[str, Any]) -> list[str]:
    """Interaction ids named by the bundle (``exemplars`` / ``exemplar_ids``: ids or records)."""
    raw: Iterable[Any] = bundle.get("exemplars") or bundle.get("exemplar_ids") or []
    ids: list[str] = []
    for x in raw:
        if isinstance(x, str):
            ids.append(x)
        elif isinstance(x, Mapping) and x.get("id"):
            ids.append(str(x["id"]))
    return ids


def anomaly_id(bundle: Mapping[str, Any]) -> str:
    """The bundle's id, or a stable one from detector + window + variant + tenant."""
    if bundle.get("id"):
        return str(bundle["id"])
    parts = [bundle.get(k) for k in ("detector", "statistic", "window_start_ms", "window_end_ms", "variant")]
    parts.append(bundle.get("tenant"))
    return "|".join(str(p) for p in parts)


def _step(value: Any) -> int | None:
    """A bundle's rollout ``step`` (the rollout judge's, 0-based), None when it has none."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def route_anomaly(
    settings: ReviewSettings,
    bundle: Mapping[str, Any],
    now_ms: int,
    exemplars: list[dict[str, Any]] | None = None,
    comparison: dict[str, Any] | None = None,
) -> list[Routed]:
    """Review items for an anomaly bundle. ``exemplars`` are the resolved interaction records
    (payloads as ``interaction_payload``), ``comparison`` the canary/control pair."""
    f = anomaly_facets(bundle)
    fallback = SEVERITY_PRIORITY.get(f.severity or "", Priority.P2)
    payload: dict[str, Any] = {
        "kind": "anomaly",
        "anomaly": anomaly_summary(bundle),
        "exemplars": [interaction_payload(r) for r in exemplars or []],
        "comparison": comparison,
        "variant": f.variant,
        "model": bundle.get("model"),
        "tenant": f.tenant,
        "rollout_step": _step(bundle.get("step")),
    }
    out: list[Routed] = []
    for queue, prio in destinations(settings, f, fallback).items():
        claim_by, decide_by = _deadlines(settings, prio, now_ms)
        item = NewItem(
            source="anomaly",
            source_id=anomaly_id(bundle),
            tenant=f.tenant,
            priority=prio,
            claim_by_ms=claim_by,
            decide_by_ms=decide_by,
            payload=payload,
            detectors=tuple(sorted(f.detectors)),
            variant=f.variant,
            model=str(bundle.get("model") or "") or None,
        )
        out.append(Routed(queue, item))
    return out
