"""The detector state a caller may read: ``GET /v1/detectors`` for one tenant's app key shows only
that tenant's groups; an operator sees everything.

The detector workers keep one state for all tenants (``detectors.engine``); its groups are keyed
``all``, ``variant=<v>``, ``model=<m>``, ``tenant=<t>`` and, for canary-vs-control comparisons,
``model=<m>|tenant=<t>|variant=<v>`` (names sorted, so ``tenant`` is followed only by ``variant``).
``all``, ``variant=`` and ``model=`` groups mix every tenant's traffic and are operator-only, as are
the global counters (``observations``, ``opened_total``). An incident (``alerts.open`` /
``alerts.resolved``) is shown when its representative group (the first of ``group_keys``, whose
numbers the incident reports) is the caller's, with only the caller's groups listed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def key_tenant(key: str) -> str | None:
    """The tenant a group key belongs to (``tenant=<t>`` or a comparison
    ``...|tenant=<t>|variant=<v>``), else None. Parsed from the end: tenant and variant names come
    from the configuration, a model name from the client, so only the last segments are trusted."""
    if key.startswith("tenant=") and "|" not in key:
        return key[len("tenant=") :]
    head, sep, variant = key.rpartition("|")
    if not sep or not variant.startswith("variant="):
        return None
    rest, sep, tenant = head.rpartition("|")
    if not sep or not rest.startswith("model=") or not tenant.startswith("tenant="):
        return None
    return tenant[len("tenant=") :]


def _mine(key: str, tenants: Collection[str]) -> bool:
    t = key_tenant(key)
    return t is not None and t in tenants


def _incidents(events: Any, tenants: Collection[str]) -> list[dict[str, Any]]:
    out = []
    for ev in events or []:
        keys = list(ev.get("group_keys") or []) if isinstance(ev, dict) else []
        if not keys or not _mine(str(keys[0]), tenants):
            continue
        scoped = dict(ev)
        for field in ("group_keys", "open_groups"):
            if field in scoped:
                scoped[field] = [k for k in scoped[field] if _mine(str(k), tenants)]
        scoped.pop("groups", None)
        out.append(scoped)
    return out


def scope_summary(summary: dict[str, Any], tenants: Collection[str] | None) -> dict[str, Any]:
    """``summary`` (``WindowEngine.summary()``) as a caller granted ``tenants`` may see it;
    ``None`` = an operator (everything, unchanged)."""
    if tenants is None or not summary:
        return summary
    alerts = summary.get("alerts") or {}
    return {
        "tenants": sorted(tenants),
        **{
            part: {k: v for k, v in (summary.get(part) or {}).items() if _mine(k, tenants)}
            for part in ("output", "input", "comparisons")
        },
        "alerts": {
            "open": _incidents(alerts.get("open"), tenants),
            "resolved": _incidents(alerts.get("resolved"), tenants),
        },
    }
