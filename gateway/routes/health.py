"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.errors import json_response
from gateway.runtime import runtime

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process serves HTTP")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", summary="Readiness: store reachable, policies loaded, models configured")
async def readyz(request: Request) -> Response:
    rt = runtime(request)
    checks = {
        "store": await rt.store_ready(),
        "policies": len(rt.service.pipeline.policies) >= 0,
        "models": bool(rt.settings.model_names()),
        "flags": rt.flags is not None,
    }
    ok = all(checks.values())
    return json_response(
        {"status": "ready" if ok else "not_ready", "checks": checks}, status=200 if ok else 503
    )
