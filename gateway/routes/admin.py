"""Operator endpoints: the configured policies and the flags as this process sees them, and the
detector state (scoped to the caller's tenant, see ``gateway.detector_scope``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.detector_scope import scope_summary
from gateway.errors import documented_errors, json_response
from gateway.routes.chat_schema import ok
from gateway.runtime import runtime
from rollguard.errors import AuthenticationFailed

router = APIRouter(tags=["operators"])


OBJECT: dict[str, object] = {"type": "object"}
DOCUMENTED = {**ok(OBJECT), **documented_errors(401)}
"""Every operator route answers 200 with a JSON object, or 401."""


@router.get(
    "/v1/policies", summary="The configured policy pipeline, in execution order", responses=DOCUMENTED
)
async def list_policies(request: Request) -> Response:
    rt = runtime(request)
    rt.auth.tenant_for(request)
    return json_response({"object": "list", "data": rt.service.pipeline.describe()})


@router.get("/v1/flags", summary="Flag source and state in this worker", responses=DOCUMENTED)
async def flags_state(request: Request) -> Response:
    rt = runtime(request)
    rt.auth.tenant_for(request)
    return json_response(rt.flags.describe())


@router.get("/v1/store", summary="Audit store counters in this worker", responses=DOCUMENTED)
async def store_state(request: Request) -> Response:
    rt = runtime(request)
    rt.auth.tenant_for(request)
    return json_response(rt.store.stats())


@router.get(
    "/v1/detectors",
    summary="Detector state per detector and flag variant (from the workers), scoped to the caller",
    description=(
        "What the detector workers keep in the store. `rollguard serve` computes none of it: with no "
        "`rollguard worker` running against the same store the answer is "
        '`{"object": "detectors", "data": {}}`. Start one with `rollguard worker -c CONFIG`; '
        "it catches up on the interactions already recorded."
    ),
    responses={**DOCUMENTED, **documented_errors(503)},
)
async def detectors_state(request: Request) -> Response:
    """The state the detector workers keep in Redis: per detector and group (variant, model,
    tenant), the current window statistics and thresholds. ``{}`` before the first interaction.

    An app key sees only its tenant's groups and incidents (``gateway.detector_scope``); an
    operator sees all: a review operator's token (``review.reviewers[].role: operator``), or
    anyone when the gateway runs without API keys (loopback only)."""
    from gateway.worker.read_model import read_detector_summary

    rt = runtime(request)
    tenants = detector_scope(request)
    summary = await read_detector_summary(rt.store.redis)
    return json_response({"object": "detectors", "data": scope_summary(summary, tenants)})


def detector_scope(request: Request) -> frozenset[str] | None:
    """The tenants whose detector state the caller may read; None = all (an operator). Raises
    ``AuthenticationFailed`` (401) for a credential that is neither an app key nor a review
    operator's token."""
    rt = runtime(request)
    if not rt.auth.enabled:
        return None
    try:
        return frozenset({rt.auth.tenant_for(request)})
    except AuthenticationFailed:
        if _review_operator(request, rt.extras.get("review")):
            return None
        raise


def _review_operator(request: Request, review: Any) -> bool:
    """True when the bearer token is a review operator's (the review console's operator role)."""
    if review is None:
        return False
    from gateway.review.auth import ReviewAuth
    from gateway.review.config import Role

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    reviewer = ReviewAuth(review.settings, review.redis).by_token(token.strip())
    return reviewer is not None and reviewer.role is Role.OPERATOR
