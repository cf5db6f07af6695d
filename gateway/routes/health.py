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
    "properties": {"status": {"enum": ["ready", "not_ready"]}, "checks": {"type": "object"}},
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
    summary="Readiness: store reachable, models configured",
    responses={
        **ok(READY),
        503: {"description": "not ready", "content": {"application/json": {"schema": READY}}},
    },
)
async def readyz(request: Request) -> Response:
    """200 ``{"status": "ready", "checks": {"store", "models"}, "policies": n, "flags": mode}``
    or 503 ``not_ready`` when a check fails. Only what can fail after startup is a check (the
    store's PING); the pipeline and the flags exist once the lifespan ran, so they are reported,
    not checked (an empty policy list is a valid config)."""
    rt = runtime(request)
    checks = {
        "store": await rt.store_ready(),
        "models": bool(rt.settings.model_names()),
    }
    ok = all(checks.values())
    body = {
        "status": "ready" if ok else "not_ready",
        "checks": checks,
        "policies": len(rt.service.pipeline.policies),
        "flags": rt.flags.mode,
    }
    return json_response(body, status=200 if ok else 503)
