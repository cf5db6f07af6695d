"""OpenAI-compatible endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``."""

from __future__ import annotations

import dataclasses
import time

from fastapi import APIRouter, Request
from opentelemetry.propagate import extract
from starlette.background import BackgroundTask
from starlette.responses import Response

from gateway.chat_request import read_json_body, validate_chat_request
from gateway.disconnect import unless_disconnected
from gateway.errors import documented_errors, error_response, json_response
from gateway.exchange import ChatResult, RequestMeta
from gateway.flags import FlagContext
from gateway.ratelimit import prompt_tokens, settle
from gateway.relay import CLIENT_CLOSED_STATUS
from gateway.routes.chat_schema import (
    CHAT_COMPLETION,
    CHAT_REQUEST_SCHEMA,
    MESSAGE_SCHEMA,
    Schema,
    ok,
)
from gateway.runtime import runtime
from gateway.sse_response import RelayResponse
from gateway.store.admission import Reservation

router = APIRouter(tags=["openai"])

__all__ = ["CHAT_REQUEST_SCHEMA", "MESSAGE_SCHEMA", "json_body", "router"]

MODEL_LIST: Schema = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {
        "object": {"const": "list"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "object", "created", "owned_by"],
                "properties": {
                    "id": {"type": "string"},
                    "object": {"const": "model"},
                    "created": {"type": "integer"},
                    "owned_by": {"type": "string"},
                },
            },
        },
    },
}


def json_body(schema: Schema) -> dict[str, object]:
    """``openapi_extra`` documenting a JSON request body read by hand (the hot path does not use
    FastAPI's body parsing)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion (OpenAI-compatible)",
    openapi_extra=json_body(CHAT_REQUEST_SCHEMA),
    responses={
        **ok(CHAT_COMPLETION, "the chat completion (text/event-stream with stream: true)", sse=True),
        **documented_errors(400, 401, 404, 413, 415, 429, 502, 503, 504),
    },
)
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions, guarded. Streaming with ``stream: true`` (SSE). Blocks: HTTP 400
    ``code: content_filter`` (input) or ``finish_reason: content_filter`` (output)."""
    rt = runtime(request)
    tenant, key = rt.auth.caller(request)
    body = await read_json_body(request, rt.settings.gateway.max_body_bytes)
    validate_chat_request(body)
    # Admission reserves the record's place before anything is accepted (StoreFull: 503 with
    # Retry-After), so an accepted interaction is never dropped from the audit trail. Released
    # once the response is over (here, and by ``gateway.app.FastPath`` on every other exit).
    # Before the rate limits: a request refused for a full store spends no rate budget.
    reservation = rt.store.reserve()
    request.state.reservation = reservation
    try:
        ticket = rt.limits.ticket(tenant, key)  # None (no store round trip) unless a limit applies
        if ticket is not None:
            await rt.limits.admit(ticket)  # RateLimited: 429 with Retry-After, upstream not called
        client = request.client
        flags = FlagContext.from_request(
            user=body.get("user"),
            headers=request.headers,
            tenant=tenant,
            remote_address=client.host if client is not None else None,
        )
        rid = request.scope.get("state", {}).get("request_id")
        meta = RequestMeta(tenant=tenant, flags=flags, trace_context=extract(request.headers), request_id=rid)
        work = rt.service.chat_completion(body, meta)
        if body.get("stream"):
            result = await work
        else:
            done = await unless_disconnected(work, request.receive)
            if done is None:  # the client left: upstream cancelled, recorded as 499
                if ticket is not None:  # its usage never comes: the prompt's estimate is charged
                    await rt.limits.charge(ticket, prompt_tokens(body.get("messages")))
                return Response(status_code=CLIENT_CLOSED_STATUS)
            result = done
        if result.after is not None and rt.store.degraded:
            # Store down: the record goes to the spool file before the response is sent, so a
            # gateway killed right after answering loses nothing (issue 10).
            await result.after()
            result = dataclasses.replace(result, after=None)
        if ticket is not None:  # charged once the reply is over; refunded if no upstream could take it
            result = await settle(result, ticket, rt.limits)
    except BaseException:
        reservation.release()
        raise
    response = render(result)
    _release_after(response, reservation)
    return response


def _release_after(response: Response, reservation: Reservation) -> None:
    """Release ``reservation`` after ``response``'s background task (the audit write)."""
    first = response.background

    async def done() -> None:
        try:
            if first is not None:
                await first()
        finally:
            reservation.release()

    response.background = BackgroundTask(done)


def render(result: ChatResult) -> Response:
    """The HTTP response of a ``ChatResult``: SSE for a stream (which records itself at its
    end), else JSON (the completion or an OpenAI error body) with the audit record written in a
    background task once the response is sent."""
    if result.stream is not None:
        sse_headers = dict(result.headers or {})
        return RelayResponse(result.stream, media_type="text/event-stream", headers=sse_headers)
    headers = dict(result.headers) if result.headers is not None else None
    if result.error is not None:
        response = error_response(result.error, headers=headers, **result.error_fields)
    else:
        response = json_response(result.completion, headers=headers)
    if result.after is not None:
        response.background = BackgroundTask(result.after)
    return response


@router.get(
    "/v1/models",
    summary="List the model aliases this gateway serves",
    responses={**ok(MODEL_LIST), **documented_errors(401)},
)
async def list_models(request: Request) -> Response:
    rt = runtime(request)
    rt.auth.tenant_for(request)
    now = int(time.time())
    data = [
        {"id": name, "object": "model", "created": now, "owned_by": "rollguard"}
        for name in rt.settings.model_names()
    ]
    return json_response({"object": "list", "data": data})
