"""Setting a rollout step's percentage on the flag: through the Unleash Admin API when one is
configured (``rollouts.unleash_admin.token``), else through the store-backed override map
(``gateway.rollout.overrides``) that every worker process of every replica reads.

Unleash Admin API (7.x, project-scoped feature endpoints; docs.getunleash.io "Admin API"):

* ``GET  /api/admin/projects/{project}/features/{flag}/environments/{env}/strategies``
* ``PUT  /api/admin/projects/{project}/features/{flag}/environments/{env}/strategies/{id}``
  with the whole strategy: ``flexibleRollout`` with ``parameters.rollout`` (percent, a string)
  and ``variants`` (weights out of 1,000; ``weightType`` ``fix`` or ``variable``)
* ``POST /api/admin/projects/{project}/features/{flag}/environments/{env}/on``

A model rollout (variant flag) keeps the strategy at 100 % and sets the variant weights: canary
``fix`` at percent x 10, control ``variable`` (the rest); at 0 % only control, at 100 % only
canary (payloads and stickiness of existing variants are kept). A policy rollout (plain flag)
sets ``parameters.rollout``. Without a strategy one is created.

A rollback also writes the store override (percent 0) so it reaches every worker within a second,
not only after the next Unleash poll; any other step clears the override's percentage so Unleash
decides again.

Errors: ``UnleashAdminError`` (``StoreError`` family: 503 to an API caller) for an unreachable
server or a non-2xx answer (the message names the status, never the token).
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from gateway.rollout.overrides import CANARY, CONTROL, OverrideStore
from rollguard.errors import StoreError
from rollguard.rollout import RolloutPlan


class UnleashAdminError(StoreError):
    """The Unleash Admin API failed or refused a change."""


class Actuator(Protocol):
    async def apply(
        self, plan: RolloutPlan, percent: float, *, by: str, reason: str, rollback: bool = False
    ) -> dict[str, Any]:
        """Make ``plan.flag`` serve ``percent`` % canary; returns what was set (kept as evidence)."""
        ...


class OverrideActuator:
    """Steps through the store-backed override map."""

    def __init__(self, overrides: OverrideStore) -> None:
        self.overrides = overrides

    async def apply(
        self, plan: RolloutPlan, percent: float, *, by: str, reason: str, rollback: bool = False
    ) -> dict[str, Any]:
        version = await self.overrides.set_percent(plan.flag, percent, by, reason)
        return {"via": "override", "flag": plan.flag, "percent": percent, "version": version}


def variants_for(percent: float, existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Unleash variants for a ``percent`` % canary (weights out of 1,000), keeping the payload and
    stickiness of ``existing`` variants of the same name."""
    by_name = {v.get("name"): v for v in existing}
    weight = round(percent * 10)

    def variant(name: str, w: int, kind: str) -> dict[str, Any]:
        old = by_name.get(name, {})
        out = {"name": name, "weight": w, "weightType": kind, "stickiness": old.get("stickiness", "default")}
        if old.get("payload"):
            out["payload"] = old["payload"]
        return out

    if weight <= 0:
        return [variant(CONTROL, 1000, "variable")]
    if weight >= 1000:
        return [variant(CANARY, 1000, "variable")]
    return [variant(CANARY, weight, "fix"), variant(CONTROL, 1000 - weight, "variable")]


class UnleashActuator:
    """Steps through the Unleash Admin API (see the module docstring)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        project: str = "default",
        environment: str = "development",
        overrides: OverrideStore | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base = url.rstrip("/")
        self.base = base if base.endswith("/api") else base + "/api"
        self.token = token
        self.project = project
        self.environment = environment
        self.overrides = overrides
        self._transport = transport

    def _env(self, flag: str) -> str:
        return f"/admin/projects/{self.project}/features/{flag}/environments/{self.environment}"

    async def _call(self, client: httpx.AsyncClient, method: str, path: str, body: Any = None) -> Any:
        try:
            resp = await client.request(method, self.base + path, json=body)
        except httpx.HTTPError as exc:
            raise UnleashAdminError(f"Unleash Admin API unreachable: {type(exc).__name__}") from exc
        if resp.status_code >= 300:
            raise UnleashAdminError(f"Unleash Admin API answered HTTP {resp.status_code} to {method} {path}")
        return resp.json() if resp.content else None

    async def apply(
        self, plan: RolloutPlan, percent: float, *, by: str, reason: str, rollback: bool = False
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"via": "unleash", "flag": plan.flag, "percent": percent}
        if rollback and self.overrides is not None:  # immediate, everywhere; Unleash catches up
            out["override_version"] = await self.overrides.set_percent(plan.flag, 0.0, by, reason)
        headers = {"Authorization": self.token, "Content-Type": "application/json"}
        async with httpx.AsyncClient(timeout=10.0, headers=headers, transport=self._transport) as client:
            strategies = await self._call(client, "GET", self._env(plan.flag) + "/strategies") or []
            rollout = next((s for s in strategies if s.get("name") == "flexibleRollout"), None)
            body = self._strategy(plan, percent, rollout)
            if rollout is None:
                created = await self._call(client, "POST", self._env(plan.flag) + "/strategies", body)
                out["strategy_id"] = created.get("id") if isinstance(created, dict) else None
            else:
                await self._call(client, "PUT", self._env(plan.flag) + f"/strategies/{rollout['id']}", body)
                out["strategy_id"] = rollout["id"]
            await self._call(client, "POST", self._env(plan.flag) + "/on")
        if not rollback and self.overrides is not None:
            out["override_version"] = await self.overrides.set_percent(plan.flag, None, by, reason)
        return out

    @staticmethod
    def _strategy(plan: RolloutPlan, percent: float, current: dict[str, Any] | None) -> dict[str, Any]:
        cur = current or {}
        params = dict(cur.get("parameters") or {"stickiness": "default", "groupId": plan.flag})
        if plan.subject.kind == "model":
            params["rollout"] = "100"
            variants = variants_for(percent, list(cur.get("variants") or []))
        else:
            params["rollout"] = str(round(percent))
            variants = list(cur.get("variants") or [])
        return {
            "name": "flexibleRollout",
            "constraints": cur.get("constraints") or [],
            "parameters": params,
            "variants": variants,
            "segments": cur.get("segments") or [],
        }
