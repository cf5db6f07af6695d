"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.errors import json_response
from gateway.routes.chat_schema import ok
from gateway.runtime import runtime

router = APIRouter(tags=["health"])


READY: dict[str, object] = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"enum": ["ready", "ready-degraded", "not_ready"]},
        "checks": {"type": "object"},
        "dependencies": {"type": "object"},
        "spool": {"type": ["object", "null"]},
    },
}


@router.get(
    "/healthz",
    summary="Liveness: the process serves HTTP",
    responses=ok({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}),
)
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: this gateway can serve (store outages degrade it)",
    responses={
        **ok(READY),
        503: {"description": "not ready", "content": {"application/json": {"schema": READY}}},
    },
)
async def readyz(request: Request) -> Response:
    """Readiness means "can serve" (issue 10). 200 ``ready`` when the store answers and nothing
    is spooled; 200 ``ready-degraded`` while the store is down or the spool is being written back
    (requests are still served: their records go to the spool file); 503 ``not_ready`` only when
    no request can be served: no model alias configured, or no room left to admit a record (the
    spool or memory queue is full, requests are refused with 503 and ``Retry-After``).

    Body: ``status``; ``checks`` (``store``: PING answered, ``models``: an alias configured);
    ``dependencies`` (``store``: ``up`` / ``down`` / ``recovering``, ``flags``: the flags mode);
    ``spool`` (``gateway.store.Store.spool_state``: spooling, records, files, bytes, reserved,
    room); ``policies`` (count) and ``flags`` (mode). The upstream models are not probed (see
    docs/operations.md)."""
    rt = runtime(request)
    store_up = await rt.store_ready()
    checks = {"store": store_up, "models": bool(rt.settings.model_names())}
    degraded = bool(getattr(rt.store, "degraded", not store_up))
    store_state = "down" if not store_up else ("recovering" if degraded else "up")
    can_admit = rt.store is not None and rt.store.has_capacity()
    if not checks["models"] or not can_admit:
        status = "not_ready"
    elif store_state != "up":
        status = "ready-degraded"
    else:
        status = "ready"
    body = {
        "status": status,
        "checks": checks,
        "dependencies": {"store": store_state, "flags": rt.flags.mode},
        "spool": rt.store.spool_state() if rt.store is not None else None,
        "policies": len(rt.service.pipeline.policies),
        "flags": rt.flags.mode,
    }
    return json_response(body, status=503 if status == "not_ready" else 200)
