"""The review JSON API under ``/v1/review`` and the router factory the gateway mounts.

``create_review_router(settings, redis)`` returns one ``APIRouter`` with the JSON API (in the
OpenAPI schema, tag ``review``) and the console under ``/review`` (``gateway/review/console.py``).
The router carries ``router.review_service`` (a ``ReviewService``) for the gateway's audit trail.

Errors are rollguard errors rendered in OpenAI's error shape by this router itself (so it works in
any FastAPI app): 401 no/unknown token, 403 no grant, 404 unknown queue/item, 409 lease lost or
expired or for another item, 400 bad label/lease/format, a body that is not JSON (``param`` null,
the message says where) or a body or query value of the wrong shape (``code: invalid_value``; a
string with a lone UTF-16 surrogate included), 503 store unavailable.
Authentication and the grants the URL decides (role, queue, lease's queue) are checked first,
before the body is read (``auth.guarded_route``): no token is 401 whatever the body.
"""

from __future__ import annotations

from typing import Any, Literal

import redis.asyncio as aioredis
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from gateway.errors import documented_errors, response_for
from gateway.review.audit_scope import scoped_audit
from gateway.review.auth import ReviewAuth, current_reviewer, guarded_route
from gateway.review.config import ReviewerSpec, Role, parse_review_settings
from gateway.review.queue import Lease, now_ms
from gateway.review.service import ReviewService
from gateway.text_checks import ValidText
from rollguard.errors import PermissionDenied, RollguardError, UnprocessableEntity
from rollguard.settings import RollguardSettings

PREFIX = "/v1/review"
LEADS_ONLY = frozenset(
    {f"{PREFIX}/queues/{{queue}}/aggregate", f"{PREFIX}/variants", f"{PREFIX}/queues/{{queue}}/audit"}
)
"""Routes for leads and operators only (403 for reviewers)."""
DECIDING = frozenset({f"{PREFIX}/queues/{{queue}}/claim"})
"""Routes that hand out or act on leases (403 for operators); every ``/leases/{lease}`` route too."""


def authorize(service: ReviewService, reviewer: ReviewerSpec, route: str, params: dict[str, Any]) -> None:
    """The grants the URL alone decides: leads-only routes, the queue in the path (or in the lease
    id), and no leases for operators. Raises ``PermissionDenied``, ``NotFound`` (unknown queue),
    ``InvalidRequest`` (malformed lease id)."""
    if route in LEADS_ONLY and reviewer.role is Role.REVIEWER:
        raise PermissionDenied("leads and operators only")
    queue = params.get("queue")
    deciding = route in DECIDING
    if params.get("lease") is not None:
        queue, _prio, _entry = Lease.parse(str(params["lease"]))
        deciding = True
    if queue is not None:
        service.check_queue(reviewer, str(queue), decide=deciding)


def _render(request: Request, exc: RollguardError | RequestValidationError) -> Response:
    """OpenAI-shaped error; a body that is not JSON at all says so and where (FastAPI reports it
    as ``loc = ("body", <character offset>)``, which would otherwise read as a field named "9")."""
    if isinstance(exc, RequestValidationError):
        bad_json = _json_error(exc)
        if bad_json is not None:
            return response_for(request, bad_json)
    return response_for(request, exc)


def _json_error(exc: RequestValidationError) -> UnprocessableEntity | None:
    """``UnprocessableEntity`` (400 ``invalid_value`` like every other bad body, ``param`` None:
    there is no field to name) for a request body that does not parse as JSON, else None."""
    first = next(iter(exc.errors()), None)
    if not first or first.get("type") != "json_invalid":
        return None
    loc = list(first.get("loc", ()))
    pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    why = str((first.get("ctx") or {}).get("error") or "JSON decode error")
    where = f" at character {pos}" if pos is not None else ""
    return UnprocessableEntity(f"the request body is not valid JSON: {why}{where}; send a JSON object")


class ClaimBody(BaseModel):
    count: int = Field(default=1, ge=1, le=500, description="items to lease at once")


class LeaseOut(BaseModel):
    lease: str = Field(description="lease id: queue:P<n>:entry")
    queue: str
    item_id: str
    priority: str
    expires_ms: int = Field(description="UTC epoch ms on the store's clock; heartbeat before")


class ReleaseBody(BaseModel):
    item_id: ValidText


class VerdictBody(BaseModel):
    item_id: ValidText
    label: ValidText = Field(description="a taxonomy label id")
    note: ValidText = Field(default="", max_length=4000)
    preference: Literal["canary", "control", "tie"] | None = Field(
        default=None, description="pairwise preference when two replies were shown"
    )
    corrected: ValidText | None = Field(default=None, max_length=20000, description="a corrected reply")


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
    """The JSON API routes (prefix ``/v1/review``). Each route's guard authenticates (writes =
    every non-GET method; cookie sessions then need the CSRF header) and runs ``authorize``
    before FastAPI reads the body."""

    async def guard(request: Request, route: str) -> None:
        service.start()
        reviewer = await auth.reviewer(request, write=request.method not in ("GET", "HEAD"))
        request.state.reviewer = reviewer
        authorize(service, reviewer, route, dict(request.path_params))

    api = APIRouter(
        prefix=PREFIX,
        tags=["review"],
        route_class=guarded_route(guard, _render),
        responses=documented_errors(400, 401, 403, 404, 409, 503),
    )

    _queue_routes(api, service)
    _lease_routes(api, service)
    _knowledge_routes(api, service)
    return api


def _queue_routes(api: APIRouter, service: ReviewService) -> None:
    """Who am I, the taxonomy, queues, their items, claiming."""

    @api.get("/me", summary="The authenticated reviewer and their grants")
    async def me(request: Request) -> dict[str, Any]:
        r = current_reviewer(request)
        return _reviewer_dict(r, service.queue_names(r))

    @api.get("/taxonomy", summary="Verdict labels with keyboard shortcuts")
    async def taxonomy(request: Request) -> list[dict[str, Any]]:
        return [label.model_dump() for label in service.settings.taxonomy]

    @api.get("/queues", summary="Queues visible to the reviewer: counts, SLA state, oldest age")
    async def queues(request: Request) -> list[dict[str, Any]]:
        r = current_reviewer(request)
        return [await service.stats(r, name) for name in service.queue_names(r)]

    @api.get("/queues/{queue}/items", summary="Open items of a queue (granted tenants only)")
    async def items(request: Request, queue: str, limit: int = 100) -> list[dict[str, Any]]:
        r = current_reviewer(request)
        rows = await service.queues.open_items(queue, limit=min(max(limit, 1), 1000))
        visible = [it for it in rows if r.role is Role.OPERATOR or r.can_tenant(it.tenant)]
        return [
            {k: v for k, v in it.to_dict(show_verdicts=False).items() if k != "payload"} for it in visible
        ]

    @api.post(
        "/queues/{queue}/claim", summary="Lease the next item(s); P1 first", response_model=list[LeaseOut]
    )
    async def claim(request: Request, queue: str, body: ClaimBody | None = None) -> list[LeaseOut]:
        r = current_reviewer(request)
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
        r = current_reviewer(request)
        it = await service.item(r, queue, item_id)
        return it.to_dict(show_verdicts=service.shows_verdicts(r, it))


def _lease_routes(api: APIRouter, service: ReviewService) -> None:
    """Heartbeat, release and verdict on a lease."""

    @api.post("/leases/{lease}/heartbeat", summary="Extend a lease", response_model=HeartbeatOut)
    async def heartbeat(request: Request, lease: str) -> HeartbeatOut:
        r = current_reviewer(request)
        return HeartbeatOut(expires_ms=await service.heartbeat(r, lease))

    @api.post("/leases/{lease}/release", summary="Give a leased item back to the queue", status_code=204)
    async def release(request: Request, lease: str, body: ReleaseBody) -> Response:
        r = current_reviewer(request)
        await service.release(r, lease, body.item_id)
        return Response(status_code=204)

    @api.post(
        "/leases/{lease}/verdict", summary="Record a verdict on a leased item", response_model=VerdictOut
    )
    async def verdict(request: Request, lease: str, body: VerdictBody) -> VerdictOut:
        r = current_reviewer(request)
        res = await service.verdict(r, lease, body.item_id, body.model_dump())
        return VerdictOut(item_id=res.item_id, verdicts=res.count, k=res.k, decided=res.decided)


def _knowledge_routes(api: APIRouter, service: ReviewService) -> None:
    """Agreement, aggregation, precision, per-variant evidence and the audit log."""

    @api.get("/queues/{queue}/agreement", summary="Cohen's kappa per pair, Krippendorff's alpha")
    async def agreement(request: Request, queue: str) -> dict[str, Any]:
        return await service.agreement(queue)

    @api.post("/queues/{queue}/aggregate", summary="Dawid-Skene posteriors; low ones go to a lead")
    async def aggregate(request: Request, queue: str) -> dict[str, Any]:
        agg = await service.aggregate(queue)
        low = [a.item for a in agg.values() if a.posterior < service.settings.posterior_threshold]
        return {"queue": queue, "items": len(agg), "to_adjudication": low}

    @api.get("/detectors/precision", summary="Reviewer-confirmed precision per detector/policy")
    async def precision(request: Request) -> dict[str, Any]:
        return {"at_ms": now_ms(), "detectors": await service.precision()}

    @api.get("/variants", summary="Decided items per flag variant: acceptable / confirmed counts")
    async def variants(request: Request) -> dict[str, Any]:
        return {"at_ms": now_ms(), "variants": await service.variant_summary()}

    @api.get(
        "/queues/{queue}/audit",
        summary="Newest audit events of the granted tenants' items (leads, operators)",
    )
    async def audit(request: Request, queue: str, count: int = 100) -> list[dict[str, str]]:
        scope = service.tenant_scope(current_reviewer(request))
        return await scoped_audit(service.queues, queue, min(max(count, 1), 10_000), scope)


def create_review_router(settings: RollguardSettings, redis: aioredis.Redis) -> APIRouter:
    """The review subsystem as one router: JSON API (``/v1/review/...``) + console (``/review``).

    ``router.review_service`` is the ``ReviewService``: the gateway passes
    ``review_service.escalate_interaction`` to its audit trail, and may call
    ``review_service.start()`` / ``await review_service.aclose()`` in its lifespan (the first
    request starts the background loops otherwise). ``router.rollout_views`` is the console's
    ``RolloutViewSlot``: a rollout controller sets its ``source`` to serve ``/review/rollouts``.
    Raises ``ConfigError`` for a bad ``review`` section."""
    from gateway.review.console import build_console
    from gateway.review.rollout_view import RolloutViewSlot

    review = parse_review_settings(settings.review)
    raw = settings.raw_content_tenants()
    service = ReviewService(
        review, redis, interactions_stream=settings.store.interactions_stream, raw_tenants=raw
    )
    auth = ReviewAuth(review, redis)
    router = APIRouter()
    router.include_router(build_api(service, auth))
    slot = RolloutViewSlot()
    router.include_router(build_console(service, auth, slot))
    router.review_service = service  # type: ignore[attr-defined]
    router.rollout_views = slot  # type: ignore[attr-defined]
    return router
