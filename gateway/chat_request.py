"""Reading and validating an OpenAI chat-completion request body, fast and with errors that name
the offending field (``param``) the way OpenAI does.

The body stays a plain ``dict`` (unknown fields are passed through to the upstream); only the
fields rollguard relies on are checked. Shapes follow the OpenAI API reference for
``POST /v1/chat/completions``.

Errors raised: ``PayloadTooLarge`` (413, body over ``max_body_bytes``), ``UnsupportedEncoding``
(415: a ``Content-Encoding`` other than ``identity``; compressed bodies are refused rather than
inflated, so the size cap never has to guard against a decompression bomb), ``InvalidRequest``
(400: malformed JSON, invalid UTF-8, a lone UTF-16 surrogate escape, wrong types, missing fields,
and, ``code: invalid_value``, valid types with impossible values, e.g. ``max_tokens: 0``: OpenAI
answers 400 there too, never 422). Content parts and the history rules that span messages (tool
calls and their answers) are in ``gateway.chat_history``, the request options (everything but
``model`` and ``messages``) in ``gateway.chat_options``.

The OpenAPI schema of the body (``gateway.routes.chat_schema``) states these same rules; a test
keeps the two in step (tests/chaos).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from gateway.chat_history import check_arguments, check_parts, check_tool_pairing
from gateway.chat_options import (
    check_metadata,
    check_options,
    check_tool_choice,
    check_tools,
    expect,
    is_str,
    out_of_range,
    type_name,
)
from gateway.text_checks import LONE_SURROGATE
from rollguard.errors import ClientError, InvalidRequest, PayloadTooLarge

MAX_CONTENT_PARTS = 128
"""Content parts per message. Every part is a text location each guardrail scans separately, so
the count, not only the size, bounds the work one request can cause."""

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class UnsupportedEncoding(ClientError):
    """415: the body has a ``Content-Encoding`` the gateway does not read (anything but
    ``identity``). The OpenAI SDKs never compress request bodies."""

    status = 415
    code = "unsupported_content_encoding"


async def read_json_body(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request body parsed as a JSON object.

    Rejects a compressed body (``Content-Encoding`` other than ``identity``: 415
    ``UnsupportedEncoding``) and a declared ``Content-Length`` over ``max_bytes`` before reading,
    and stops reading a chunked body as soon as it passes the limit (bytes).
    """
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedEncoding(
            f"Content-Encoding {encoding[:40]!r} is not supported; send the JSON body uncompressed"
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise PayloadTooLarge(
                    f"request body of {int(declared)} bytes exceeds the limit of {max_bytes} bytes"
                )
        except ValueError:
            raise InvalidRequest("invalid Content-Length header") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if _bad_utf8(raw):
            raise InvalidRequest("request body is not valid UTF-8") from None
        if "surrogate" in str(exc):
            raise InvalidRequest(LONE_SURROGATE) from None
        raise InvalidRequest(f"request body is not valid JSON: {exc.args[0] if exc.args else exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, not {type(body).__name__}")
    try:
        # The body is serialised again (upstream call, audit record); orjson writes at most 254
        # levels of nesting although it reads 1024. A few microseconds for a typical body.
        orjson.dumps(body)
    except orjson.JSONEncodeError:
        raise InvalidRequest("request body nests JSON too deeply (more than 254 levels)") from None
    return body


def _bad_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _check_content(m: dict[str, Any], param: str, role: str) -> None:
    content = m.get("content")
    if content is None:
        # OpenAI: an assistant message may carry tool_calls, a function_call or a refusal instead;
        # a function message's content may be null.
        alt = (
            bool(m.get("tool_calls")) or isinstance(m.get("function_call"), dict) or is_str(m.get("refusal"))
        )
        expect(
            (role == "assistant" and alt) or role == "function",
            param,
            f"{param} is required for role {role!r}",
        )
        return
    if isinstance(content, str):
        return
    expect(
        isinstance(content, list) and role != "function",
        param,
        f"{param} must be a string" + ("" if role == "function" else " or an array of content parts"),
    )
    if len(content) > MAX_CONTENT_PARTS:
        raise out_of_range(
            f"{param} has {len(content)} content parts; at most {MAX_CONTENT_PARTS} are accepted", param
        )
    check_parts(content, param, role)


def _check_tool_calls(calls: Any, param: str) -> None:
    expect(isinstance(calls, list) and len(calls) > 0, param, f"{param} must be a non-empty array")
    for j, call in enumerate(calls):
        p = f"{param}[{j}]"
        expect(isinstance(call, dict), p, f"{p} must be an object")
        expect(is_str(call.get("id")), f"{p}.id", f"{p}.id must be a string")
        expect(call.get("type") == "function", f"{p}.type", f"{p}.type must be 'function'")
        fn = call.get("function")
        expect(isinstance(fn, dict), f"{p}.function", f"{p}.function must be an object")
        expect(is_str(fn.get("name")), f"{p}.function.name", f"{p}.function.name must be a string")
        args = fn.get("arguments")
        expect(is_str(args), f"{p}.function.arguments", f"{p}.function.arguments must be a string")
        check_arguments(args, f"{p}.function.arguments")


def _check_function_call(fc: Any, param: str) -> None:
    """The deprecated ``function_call`` of an assistant message: ``{name, arguments}``."""
    expect(isinstance(fc, dict), param, f"{param} must be an object")
    expect(is_str(fc.get("name")), f"{param}.name", f"{param}.name must be a string")
    args = fc.get("arguments")
    expect(is_str(args), f"{param}.arguments", f"{param}.arguments must be a string")
    check_arguments(args, f"{param}.arguments")


def _check_message(m: Any, i: int) -> None:
    p = f"messages[{i}]"
    expect(isinstance(m, dict), p, f"{p} must be an object, got {type_name(m)}")
    role = m.get("role")
    expect(is_str(role), f"{p}.role", f"{p}.role must be a string")
    expect(role in ROLES, f"{p}.role", f"{p}.role must be one of {sorted(ROLES)}")
    name = m.get("name")
    expect(name is None or is_str(name), f"{p}.name", f"{p}.name must be a string")
    expect(role != "function" or is_str(name), f"{p}.name", f"{p}.name is required for role 'function'")
    for key in ("tool_calls", "function_call", "refusal"):
        if m.get(key) is not None:
            expect(role == "assistant", f"{p}.{key}", f"{p}.{key} is only valid on assistant messages")
    if m.get("tool_calls") is not None:
        _check_tool_calls(m["tool_calls"], f"{p}.tool_calls")
    if m.get("function_call") is not None:
        _check_function_call(m["function_call"], f"{p}.function_call")
    refusal = m.get("refusal")
    expect(refusal is None or is_str(refusal), f"{p}.refusal", f"{p}.refusal must be a string")
    _check_content(m, f"{p}.content", role)
    if role == "tool":
        expect(is_str(m.get("tool_call_id")), f"{p}.tool_call_id", f"{p}.tool_call_id must be a string")


def validate_chat_request(body: dict[str, Any]) -> None:
    """Check the fields rollguard relies on and the rules a real provider applies; raise
    ``InvalidRequest`` (400) naming ``param`` (e.g. ``messages[2].content``). Unknown fields are
    left alone (passed through to the upstream)."""
    model = body.get("model")
    expect(model is not None, "model", "you must provide a model parameter")
    expect(isinstance(model, str) and model != "", "model", "model must be a non-empty string")
    messages = body.get("messages")
    expect(messages is not None, "messages", "you must provide a messages parameter")
    if not isinstance(messages, list):
        raise InvalidRequest(f"messages must be an array, got {type_name(messages)}", param="messages")
    expect(len(messages) > 0, "messages", "messages must contain at least one message")
    for i, m in enumerate(messages):
        _check_message(m, i)
    check_tool_pairing(messages)
    check_options(body)
    check_tools(body.get("tools"))
    check_tool_choice(body)
    check_metadata(body.get("metadata"))
