"""The review JSON API under ``/v1/review`` and the router factory the gateway mounts.

``create_review_router(settings, redis)`` returns one ``APIRouter`` with the JSON API (in the
OpenAPI schema, tag ``review``) and the console under ``/review`` (``gateway/review/console.py``).
The router carries ``router.review_service`` (a ``ReviewService``) for the gateway's audit trail.

Errors are rollguard errors rendered in OpenAI's error shape by this router itself (so it works in
any FastAPI app): 401 no/unknown token, 403 no grant, 404 unknown queue/item, 409 lease lost,
400 bad label/lease/format, 503 store unavailable.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Literal

import redis.asyncio as aioredis
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from gateway.review.auth import ReviewAuth
from gateway.review.config import ReviewerSpec, Role, parse_review_settings
from gateway.review.queue import now_ms
from gateway.review.service import ReviewService
from rollguard.errors import PermissionDenied, RollguardError
from rollguard.settings import RollguardSettings


class ErrorMappingRoute(APIRoute):
    """Renders ``RollguardError`` as ``{"error": {...}}`` with its HTTP status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RollguardError as exc:
                return JSONResponse(exc.to_body(), status_code=exc.status)

        return route


class ClaimBody(BaseModel):
    count: int = Field(default=1, ge=1, le=500, description="items to lease at once")


class LeaseOut(BaseModel):
    lease: str = Field(description="lease id: queue:P<n>:entry")
    queue: str
    item_id: str
    priority: str
    expires_ms: int = Field(description="UTC epoch ms on the store's clock; heartbeat before")


class ReleaseBody(BaseModel):
    item_id: str


class VerdictBody(BaseModel):
    item_id: str
    label: str = Field(description="a taxonomy label id")
    note: str = Field(default="", max_length=4000)
    preference: Literal["canary", "control", "tie"] | None = Field(
        default=None, description="pairwise preference when two replies were shown"
    )
    corrected: str | None = Field(default=None, max_length=20000, description="a corrected reply")


class VerdictOut(BaseModel):
    item_id: str
    verdicts: int
    k: int
    decided: bool


class HeartbeatOut(BaseModel):
    expires_ms: int


def _reviewer_dict(r: ReviewerSpec, queues: list[str]) -> dict[str, Any]:
    return {"name": r.name, "role": r.role.value, "queues": queues, "tenants": list(r.tenants)}


def build_api(service: ReviewService, auth: ReviewAuth) -> APIRouter:
    """The JSON API routes (prefix ``/v1/review``)."""
    api = APIRouter(prefix="/v1/review", tags=["review"], route_class=ErrorMappingRoute)

    async def who(request: Request, write: bool = False) -> ReviewerSpec:
        service.start()
        return await auth.reviewer(request, write=write)

    @api.get("/me", summary="The authenticated reviewer and their grants")
    async def me(request: Request) -> dict[str, Any]:
        r = await who(request)
        return _reviewer_dict(r, service.queue_names(r))

    @api.get("/taxonomy", summary="Verdict labels with keyboard shortcuts")
    async def taxonomy(request: Request) -> list[dict[str, Any]]:
        await who(request)
        return [label.model_dump() for label in service.settings.taxonomy]

    @api.get("/queues", summary="Queues visible to the reviewer: counts, SLA state, oldest age")
    async def queues(request: Request) -> list[dict[str, Any]]:
        r = await who(request)
        return [await service.stats(r, name) for name in service.queue_names(r)]

    @api.get("/queues/{queue}/items", summary="Open items of a queue (granted tenants only)")
    async def items(request: Request, queue: str, limit: int = 100) -> list[dict[str, Any]]:
        r = await who(request)
        service.check_queue(r, queue)
        rows = await service.queues.open_items(queue, limit=min(max(limit, 1), 1000))
        visible = [it for it in rows if r.role is Role.OPERATOR or r.can_tenant(it.tenant)]
        return [
            {k: v for k, v in it.to_dict(show_verdicts=False).items() if k != "payload"} for it in visible
        ]

    @api.post(
        "/queues/{queue}/claim", summary="Lease the next item(s); P1 first", response_model=list[LeaseOut]
    )
    async def claim(request: Request, queue: str, body: ClaimBody | None = None) -> list[LeaseOut]:
        r = await who(request, write=True)
        leases = await service.claim(r, queue, count=(body or ClaimBody()).count)
        return [
            LeaseOut(
                lease=le.id,
                queue=le.queue,
                item_id=le.item_id,
                priority=le.priority.value,
                expires_ms=le.expires_ms,
            )
            for le in leases
        ]

    @api.get("/queues/{queue}/items/{item_id}", summary="One item (403 for another tenant's item)")
    async def item(request: Request, queue: str, item_id: str) -> dict[str, Any]:
        r = await who(request)
        it = await service.item(r, queue, item_id)
        return it.to_dict(show_verdicts=service.shows_verdicts(r, it))

    @api.post("/leases/{lease}/heartbeat", summary="Extend a lease", response_model=HeartbeatOut)
    async def heartbeat(request: Request, lease: str) -> HeartbeatOut:
        r = await who(request, write=True)
        return HeartbeatOut(expires_ms=await service.heartbeat(r, lease))

    @api.post("/leases/{lease}/release", summary="Give a leased item back to the queue", status_code=204)
    async def release(request: Request, lease: str, body: ReleaseBody) -> Response:
        r = await who(request, write=True)
        await service.release(r, lease, body.item_id)
        return Response(status_code=204)

    @api.post(
        "/leases/{lease}/verdict", summary="Record a verdict on a leased item", response_model=VerdictOut
    )
    async def verdict(request: Request, lease: str, body: VerdictBody) -> VerdictOut:
        r = await who(request, write=True)
        res = await service.verdict(r, lease, body.item_id, body.model_dump())
        return VerdictOut(item_id=res.item_id, verdicts=res.count, k=res.k, decided=res.decided)

    @api.get("/queues/{queue}/agreement", summary="Cohen's kappa per pair, Krippendorff's alpha")
    async def agreement(request: Request, queue: str) -> dict[str, Any]:
        r = await who(request)
        service.check_queue(r, queue)
        return await service.agreement(queue)

    @api.post("/queues/{queue}/aggregate", summary="Dawid-Skene posteriors; low ones go to a lead")
    async def aggregate(request: Request, queue: str) -> dict[str, Any]:
        r = await who(request, write=True)
        if r.role is Role.REVIEWER:
            raise PermissionDenied("leads and operators only")
        service.check_queue(r, queue)
        agg = await service.aggregate(queue)
        low = [a.item for a in agg.values() if a.posterior < service.settings.posterior_threshold]
        return {"queue": queue, "items": len(agg), "to_adjudication": low}

    @api.get("/detectors/precision", summary="Reviewer-confirmed precision per detector/policy")
    async def precision(request: Request) -> dict[str, Any]:
        await who(request)
        return {"at_ms": now_ms(), "detectors": await service.precision()}

    @api.get("/variants", summary="Decided items per flag variant: acceptable / confirmed counts")
    async def variants(request: Request) -> dict[str, Any]:
        r = await who(request)
        if r.role is Role.REVIEWER:
            raise PermissionDenied("leads and operators only")
        return {"at_ms": now_ms(), "variants": await service.variant_summary()}

    @api.get("/queues/{queue}/audit", summary="Newest audit events (leads and operators)")
    async def audit(request: Request, queue: str, count: int = 100) -> list[dict[str, str]]:
        r = await who(request)
        if r.role is Role.REVIEWER:
            raise PermissionDenied("leads and operators only")
        service.check_queue(r, queue)
        return await service.queues.audit(queue, count=min(max(count, 1), 10_000))

    return api


def create_review_router(settings: RollguardSettings, redis: aioredis.Redis) -> APIRouter:
    """The review subsystem as one router: JSON API (``/v1/review/...``) + console (``/review``).

    ``router.review_service`` is the ``ReviewService``: the gateway passes
    ``review_service.escalate_interaction`` to its audit trail, and may call
    ``review_service.start()`` / ``await review_service.aclose()`` in its lifespan (the first
    request starts the background loops otherwise). Raises ``ConfigError`` for a bad ``review``
    section."""
    from gateway.review.console import build_console

    review = parse_review_settings(settings.review)
    service = ReviewService(review, redis, interactions_stream=settings.store.interactions_stream)
    auth = ReviewAuth(review, redis)
    router = APIRouter()
    router.include_router(build_api(service, auth))
    router.include_router(build_console(service, auth))
    router.review_service = service  # type: ignore[attr-defined]
    return router
