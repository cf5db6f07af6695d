"""The rollout and kill-switch API. Authentication reuses the review accounts (``review.reviewers``:
bearer token or console session; ``gateway.review.auth.ReviewAuth``): every route needs a
``lead`` or ``operator``; reading (``GET``) is open to reviewers too.

::

    GET  /v1/rollouts                     every rollout's state
    POST /v1/rollouts                     {"id", "plan": {...}, "start": true} -> 201
    GET  /v1/rollouts/{id}                state, the newest judgments and audit entries
    POST /v1/rollouts/{id}/start|approve|pause|resume|rollback     {"step": k, "reason": "..."}
    POST /v1/flags/{flag}/kill|revive     the store-backed kill switch (every process, < 1 s)

Answers: 401 without a valid token, 403 without the role (before the body is read), 404 unknown
rollout, 409 a transition the state does not allow (approving a rollout that is not awaiting
approval; a second approval of one step), 400 a malformed body or plan (one line naming the
field), 503 the store or the Unleash Admin API failed. Errors are OpenAI-shaped
(``gateway.errors``).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.errors import documented_errors, json_response
from gateway.rollout.roles import NO_ACCOUNTS, operator_name
from gateway.rollout.service import RolloutService
from gateway.routes.chat_schema import ok
from rollguard.errors import ConfigError, InvalidRequest, PermissionDenied
from rollguard.rollout import parse_plan

MAX_BODY = 256 * 1024


def _service(request: Request) -> RolloutService:
    svc: RolloutService | None = request.app.state.runtime.extras.get("rollouts")
    if svc is None:
        raise InvalidRequest("rollouts are not enabled in this gateway", code="not_enabled")
    return svc


async def _person(request: Request, *, write: bool) -> str:
    """``<role>:<name>`` of the caller. Raises ``AuthenticationFailed`` / ``PermissionDenied``."""
    review = request.app.state.runtime.settings.review
    if review is None:
        raise PermissionDenied(NO_ACCOUNTS)
    from gateway.review.auth import ReviewAuth

    reviewer = await ReviewAuth(review, request.app.state.runtime.store.redis).reviewer(request, write=write)
    if write:
        return operator_name(reviewer)
    return f"{reviewer.role.value}:{reviewer.name}"


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidRequest("body too large", code="request_too_large")
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _step(body: dict[str, Any]) -> int | None:
    step = body.get("step")
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, int):
        raise InvalidRequest("step must be an integer", param="step")
    return step


def _reason(body: dict[str, Any], default: str) -> str:
    reason = body.get("reason", default)
    if not isinstance(reason, str):
        raise InvalidRequest("reason must be a string", param="reason")
    return reason[:500] or default


router = APIRouter(tags=["rollouts"])

_OBJECT: dict[str, object] = {"type": "object"}
_READ = {**ok(_OBJECT), **documented_errors(401, 403, 404, 503)}
_WRITE = {**ok(_OBJECT), **documented_errors(400, 401, 403, 404, 409, 503)}
_CREATED = {
    201: {"description": "Created", "content": {"application/json": {"schema": _OBJECT}}},
    **documented_errors(400, 401, 403, 409, 503),
}


@router.get("/v1/rollouts", summary="Every rollout's state", responses=_READ)
async def list_rollouts(request: Request) -> Response:
    await _person(request, write=False)
    states = await _service(request).repo.all()
    return json_response({"object": "list", "data": [s.to_dict() for s in states]})


@router.post(
    "/v1/rollouts", summary="Create (and by default start) a rollout", status_code=201, responses=_CREATED
)
async def create_rollout(request: Request) -> Response:
    who = await _person(request, write=True)
    body = await _body(request)
    rid = body.get("id")
    if not isinstance(rid, str) or not rid or not all(c.isalnum() or c in "_.-" for c in rid):
        raise InvalidRequest("id: letters, digits, '_', '.', '-' only", param="id")
    if not isinstance(body.get("plan"), dict):
        raise InvalidRequest("plan: an object is required", param="plan")
    try:
        plan = parse_plan(body["plan"], prefix="plan")
    except ConfigError as exc:
        raise InvalidRequest(str(exc), param=exc.field or "plan") from None
    state = await _service(request).create(rid, plan, who, start=bool(body.get("start", True)))
    return json_response(state.to_dict(), status=201)


@router.get("/v1/rollouts/{rollout_id}", summary="One rollout: state, judgments, audit", responses=_READ)
async def get_rollout(request: Request, rollout_id: str) -> Response:
    await _person(request, write=False)
    svc = _service(request)
    state = await svc.repo.get(rollout_id)
    return json_response(
        {
            **state.to_dict(),
            "judgments": await svc.repo.judgments(rollout_id, 20),
            "audit": await svc.repo.audit(rollout_id, 50),
        }
    )


@router.post(
    "/v1/rollouts/{rollout_id}/{action}",
    summary="start | approve | pause | resume | rollback",
    responses=_WRITE,
)
async def act(request: Request, rollout_id: str, action: str) -> Response:
    if action not in ("start", "approve", "pause", "resume", "rollback"):
        raise InvalidRequest(f"unknown action {action!r}", param="action", code="not_found")
    who = await _person(request, write=True)
    body = await _body(request)
    svc = _service(request)
    if action == "start":
        state = await svc.start(rollout_id, who)
    elif action == "approve":
        state = await svc.approve(rollout_id, who, step=_step(body))
    elif action == "pause":
        state = await svc.pause(rollout_id, who, _reason(body, "paused by a person"))
    elif action == "resume":
        state = await svc.resume(rollout_id, who)
    else:
        state = await svc.rollback(rollout_id, who, _reason(body, "rolled back by a person"))
    return json_response(state.to_dict())


@router.post(
    "/v1/flags/{flag}/{action}", summary="Kill switch: kill | revive (every process, < 1 s)", responses=_WRITE
)
async def kill_switch(request: Request, flag: str, action: str) -> Response:
    if action not in ("kill", "revive"):
        raise InvalidRequest(f"unknown action {action!r}", param="action", code="not_found")
    who = await _person(request, write=True)
    body = await _body(request)
    svc = _service(request)
    reason = _reason(body, "kill switch" if action == "kill" else "revived")
    version = await (svc.kill(flag, who, reason) if action == "kill" else svc.revive(flag, who, reason))
    return json_response({"flag": flag, "killed": action == "kill", "version": version, "by": who})
