"""Operator endpoints: the configured policies and the flags as this process sees them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.errors import json_response
from gateway.runtime import runtime

router = APIRouter(tags=["operators"])


@router.get("/v1/policies", summary="The configured policy pipeline, in execution order")
async def list_policies(request: Request) -> Response:
    rt = runtime(request)
    rt.auth.tenant_for(request)
    return json_response({"object": "list", "data": rt.service.pipeline.describe()})


@router.get("/v1/flags", summary="Flag source and state in this worker")
async def flags_state(request: Request) -> Response:
    rt = runtime(request)
    rt.auth.tenant_for(request)
    return json_response(rt.flags.describe())


@router.get("/v1/store", summary="Audit store counters in this worker")
async def store_state(request: Request) -> Response:
    rt = runtime(request)
    rt.auth.tenant_for(request)
    return json_response(rt.store.stats())


@router.get("/v1/detectors", summary="Detector state per detector and flag variant (from the workers)")
async def detectors_state(request: Request) -> Response:
    """The state the detector workers keep in Redis: per detector and group (variant, model,
    tenant), the current window statistics and thresholds. ``{}`` before the first interaction."""
    from gateway.worker.read_model import read_detector_summary

    rt = runtime(request)
    rt.auth.tenant_for(request)
    return json_response({"object": "detectors", "data": await read_detector_summary(rt.store.redis)})
