"""``POST /v1/guard/check``: run the policy pipeline without calling a model. How an operator tests
a policy alone."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.chat_request import read_json_body, validate_chat_request
from gateway.errors import documented_errors, json_response
from gateway.routes.chat_schema import CHAT_REQUEST_SCHEMA, TOOL_CHOICE_NEEDS_TOOLS, Schema, nullable, ok
from gateway.routes.openai import json_body
from gateway.runtime import runtime
from policies.base import CheckContext
from rollguard.errors import InvalidRequest
from rollguard.types import Decision, Stage, Verdict

router = APIRouter(tags=["guardrails"])


def _public(d: Decision) -> dict[str, Any]:
    return {
        "policy": d.policy,
        "stage": d.stage.value,
        "verdict": d.verdict.value,
        "score": round(d.score, 4),
        "reason": d.reason,
        "enforced": d.enforced,
        "evidence": [e.to_dict() for e in d.evidence],
        "elapsed_ms": round(d.elapsed_ms, 3),
    }


IGNORED = ("stream", "stream_options")
"""Chat-completion fields the check ignores (it is never streamed)."""

GUARD_REQUEST_SCHEMA: Schema = {
    "type": "object",
    "required": ["messages"],
    "additionalProperties": True,
    "properties": {
        **{k: v for k, v in CHAT_REQUEST_SCHEMA["properties"].items() if k not in IGNORED},
        **{k: {"description": "ignored: the check is never streamed"} for k in IGNORED},
        "completion": nullable(
            {"type": "string", "description": "a reply to check with the post_call policies"}
        ),
        "policies": nullable(
            {
                "type": "array",
                "items": {"type": "string"},
                "description": "only these policy ids (each one configured: GET /v1/policies)",
            }
        ),
    },
    "allOf": [TOOL_CHOICE_NEEDS_TOOLS],
    "example": {
        "messages": [{"role": "user", "content": "mail me at jo@example.com"}],
        "completion": "Sure.",
    },
}
"""The chat-completion body (``model`` optional) plus ``completion`` and ``policies``."""

GUARD_RESULT: Schema = {
    "type": "object",
    "required": ["verdict", "decisions", "messages", "completion"],
    "properties": {
        "verdict": {"type": "string", "enum": [v.value for v in Verdict]},
        "decisions": {"type": "array", "items": {"type": "object"}},
        "messages": {"type": "array"},
        "completion": nullable({"type": "string"}),
    },
}


@router.post(
    "/v1/guard/check",
    summary="Run the guardrail pipeline on messages (and a completion)",
    openapi_extra=json_body(GUARD_REQUEST_SCHEMA),
    responses={**ok(GUARD_RESULT), **documented_errors(400, 401, 413, 415, 429, 503)},
)
async def guard_check(request: Request) -> Response:
    """Body ``{"messages": [...], "completion": optional str, "policies": optional [ids]}``.
    Returns ``{"verdict", "decisions": [{"policy","verdict","score","reason","enforced",...}],
    "messages": <after redaction>, "completion": <after redaction or null>}``. Counts against the
    caller's ``rpm`` budgets like a chat completion (429 ``rate_limit_exceeded`` when spent)."""
    rt = runtime(request)
    tenant, key = rt.auth.caller(request)
    body = await read_json_body(request, rt.settings.gateway.max_body_bytes)
    completion = body.get("completion")
    if completion is not None and not isinstance(completion, str):
        raise InvalidRequest("completion must be a string", param="completion")
    only = body.get("policies")
    if only is not None and (not isinstance(only, list) or not all(isinstance(p, str) for p in only)):
        raise InvalidRequest("policies must be an array of policy ids", param="policies")
    known = {p.id for p in rt.service.pipeline.policies}
    if only is not None and (unknown := sorted(set(only) - known)):
        raise InvalidRequest(f"unknown policy id(s) {unknown}; configured: {sorted(known)}", param="policies")
    validate_chat_request({"model": "guard-check", **body, "stream": False, "stream_options": None})
    ticket = rt.limits.ticket(tenant, key)
    if ticket is not None:
        await rt.limits.admit(ticket)
    selected = set(only) if only is not None else known

    def enabled(cp: Any) -> bool:
        return cp.id in selected

    decisions: list[Decision] = []
    ctx = CheckContext(stage=Stage.PRE_CALL, messages=body["messages"], tenant=tenant)
    pre = await rt.service.pipeline.run(ctx, enabled)
    decisions.extend(pre.decisions)
    verdict = pre.verdict
    out_completion = None
    if completion is not None:
        post_ctx = CheckContext(
            stage=Stage.POST_CALL,
            messages=ctx.messages,
            tenant=tenant,
            completion=completion,
            vault=ctx.vault,
        )
        post = await rt.service.pipeline.run(post_ctx, enabled)
        decisions.extend(post.decisions)
        if post.verdict.severity > verdict.severity:
            verdict = post.verdict
        out_completion = post_ctx.completion
    if verdict is Verdict.BLOCK:
        out_completion = None
    return json_response(
        {
            "verdict": verdict.value,
            "decisions": [_public(d) for d in decisions],
            "messages": ctx.messages,
            "completion": out_completion,
        }
    )
