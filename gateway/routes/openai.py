"""OpenAI-compatible endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from gateway.chat_request import read_json_body, validate_chat_request
from gateway.errors import error_response, json_response
from gateway.exchange import ChatResult, RequestMeta
from gateway.flags import FlagContext
from gateway.runtime import runtime
from gateway.sse_response import RelayResponse
from rollguard.errors import StoreError

router = APIRouter(tags=["openai"])

MESSAGE_SCHEMA: dict[str, object] = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "object", "properties": {"type": {"type": "string"}}}},
                {"type": "null"},
            ]
        },
        "tool_calls": {"type": "array", "items": {"type": "object"}},
        "tool_call_id": {"type": "string"},
        "name": {"type": "string"},
    },
}
"""An OpenAI chat message (the schema the OpenAPI document shows; validation is in
``gateway.chat_request``)."""

CHAT_REQUEST_SCHEMA: dict[str, object] = {
    "type": "object",
    "required": ["model", "messages"],
    "additionalProperties": True,
    "properties": {
        "model": {"type": "string", "example": "demo"},
        "messages": {"type": "array", "minItems": 1, "items": MESSAGE_SCHEMA},
        "stream": {"type": "boolean", "default": False},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "n": {"type": "integer", "minimum": 1},
        "tools": {"type": "array", "items": {"type": "object"}},
        "tool_choice": {},
        "response_format": {"type": "object"},
        "user": {"type": "string", "description": "end-user id: flag stickiness (stored hashed)"},
    },
    "example": {"model": "demo", "messages": [{"role": "user", "content": "Hello!"}]},
}


def json_body(schema: dict[str, object]) -> dict[str, object]:
    """``openapi_extra`` documenting a JSON request body read by hand (the hot path does not use
    FastAPI's body parsing)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion (OpenAI-compatible)",
    openapi_extra=json_body(CHAT_REQUEST_SCHEMA),
)
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions, guarded. Streaming with ``stream: true`` (SSE). Blocks: HTTP 400
    ``code: content_filter`` (input) or ``finish_reason: content_filter`` (output)."""
    rt = runtime(request)
    tenant = rt.auth.tenant_for(request)
    body = await read_json_body(request, rt.settings.gateway.max_body_bytes)
    validate_chat_request(body)
    if not rt.store.has_capacity():
        # Refuse before accepting: an accepted interaction is never dropped from the audit trail.
        raise StoreError("the audit store is unavailable and its buffer is full; retry shortly")
    client = request.client
    flags = FlagContext.from_request(
        user=body.get("user"),
        headers=request.headers,
        tenant=tenant,
        remote_address=client.host if client is not None else None,
    )
    result = await rt.service.chat_completion(body, RequestMeta(tenant=tenant, flags=flags))
    return render(result)


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


@router.get("/v1/models", summary="List the model aliases this gateway serves")
async def list_models(request: Request) -> Response:
    rt = runtime(request)
    rt.auth.tenant_for(request)
    now = int(time.time())
    data = [
        {"id": name, "object": "model", "created": now, "owned_by": "rollguard"}
        for name in rt.settings.model_names()
    ]
    return json_response({"object": "list", "data": data})
