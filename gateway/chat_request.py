"""Reading and validating an OpenAI chat-completion request body, fast and with errors that name
the offending field (``param``) the way OpenAI does.

The body stays a plain ``dict`` (unknown fields are passed through to the upstream); only the
fields rollguard relies on are checked. Shapes follow the OpenAI API reference for
``POST /v1/chat/completions``.

Errors raised: ``PayloadTooLarge`` (413, body over ``max_body_bytes``), ``UnsupportedEncoding``
(415: a ``Content-Encoding`` other than ``identity``; compressed bodies are refused rather than
inflated, so the size cap never has to guard against a decompression bomb), ``InvalidRequest``
(400: malformed JSON, invalid UTF-8, wrong types, missing fields), ``UnprocessableEntity`` (422:
valid types with impossible values, e.g. ``max_tokens: 0``).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from rollguard.errors import ClientError, InvalidRequest, PayloadTooLarge, UnprocessableEntity

MAX_CONTENT_PARTS = 128
"""Content parts per message. Every part is a text location each guardrail scans separately, so
the count, not only the size, bounds the work one request can cause."""

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

METADATA_MAX_KEYS = 16
METADATA_MAX_KEY_CHARS = 64
METADATA_MAX_VALUE_CHARS = 512
"""OpenAI's limits on ``metadata``: at most 16 pairs, keys up to 64 characters, string values up to
512 characters."""


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


def _type_name(v: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
    }.get(type(v), "null" if v is None else type(v).__name__)


def _expect(cond: bool, param: str, message: str) -> None:
    if not cond:
        raise InvalidRequest(message, param=param)


def _number(body: dict[str, Any], name: str, lo: float, hi: float) -> None:
    v = body.get(name)
    if v is None:
        return
    _expect(
        isinstance(v, int | float) and not isinstance(v, bool),
        name,
        f"{name} must be a number, got {_type_name(v)}",
    )
    if not lo <= v <= hi:
        raise UnprocessableEntity(f"{name} must be between {lo} and {hi}, got {v}", param=name)


def _positive_int(body: dict[str, Any], name: str) -> None:
    v = body.get(name)
    if v is None:
        return
    _expect(
        isinstance(v, int) and not isinstance(v, bool),
        name,
        f"{name} must be an integer, got {_type_name(v)}",
    )
    if v < 1:
        raise UnprocessableEntity(f"{name} must be at least 1, got {v}", param=name)


def _check_content(content: Any, param: str, role: str, has_tool_calls: bool) -> None:
    if content is None:
        # OpenAI: an assistant message may carry tool_calls, a function_call or a refusal instead.
        _expect(role == "assistant" and has_tool_calls, param, f"{param} is required for role {role!r}")
        return
    if isinstance(content, str):
        return
    _expect(isinstance(content, list), param, f"{param} must be a string or an array of content parts")
    if len(content) > MAX_CONTENT_PARTS:
        raise UnprocessableEntity(
            f"{param} has {len(content)} content parts; at most {MAX_CONTENT_PARTS} are accepted", param=param
        )
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        _expect(isinstance(part, dict), p, f"{p} must be an object")
        ptype = part.get("type")
        _expect(isinstance(ptype, str), f"{p}.type", f"{p}.type must be a string")
        if ptype == "text":
            _expect(isinstance(part.get("text"), str), f"{p}.text", f"{p}.text must be a string")


def _check_tool_calls(calls: Any, param: str) -> None:
    _expect(isinstance(calls, list), param, f"{param} must be an array")
    for j, call in enumerate(calls):
        p = f"{param}[{j}]"
        _expect(isinstance(call, dict), p, f"{p} must be an object")
        fn = call.get("function")
        _expect(isinstance(fn, dict), f"{p}.function", f"{p}.function must be an object")
        _expect(isinstance(fn.get("name"), str), f"{p}.function.name", f"{p}.function.name must be a string")
        args = fn.get("arguments", "")
        _expect(isinstance(args, str), f"{p}.function.arguments", f"{p}.function.arguments must be a string")


def validate_chat_request(body: dict[str, Any]) -> None:
    """Check the fields rollguard relies on; raise ``InvalidRequest`` / ``UnprocessableEntity``
    naming ``param`` (e.g. ``messages[2].content``). Unknown fields are left alone."""
    model = body.get("model")
    _expect(model is not None, "model", "you must provide a model parameter")
    _expect(isinstance(model, str) and model != "", "model", "model must be a non-empty string")
    messages = body.get("messages")
    _expect(messages is not None, "messages", "you must provide a messages parameter")
    if not isinstance(messages, list):
        raise InvalidRequest(f"messages must be an array, got {_type_name(messages)}", param="messages")
    _expect(len(messages) > 0, "messages", "messages must contain at least one message")
    for i, m in enumerate(messages):
        p = f"messages[{i}]"
        _expect(isinstance(m, dict), p, f"{p} must be an object, got {_type_name(m)}")
        role = m.get("role")
        _expect(isinstance(role, str), f"{p}.role", f"{p}.role must be a string")
        _expect(role in ROLES, f"{p}.role", f"{p}.role {role!r} is not one of {sorted(ROLES)}")
        tool_calls = m.get("tool_calls")
        if tool_calls is not None:
            _expect(
                role == "assistant", f"{p}.tool_calls", f"{p}.tool_calls is only valid on assistant messages"
            )
            _check_tool_calls(tool_calls, f"{p}.tool_calls")
        has_alt = (
            bool(tool_calls) or isinstance(m.get("function_call"), dict) or isinstance(m.get("refusal"), str)
        )
        _check_content(m.get("content"), f"{p}.content", role, has_alt)
        if role == "tool":
            tcid = m.get("tool_call_id")
            _expect(isinstance(tcid, str), f"{p}.tool_call_id", f"{p}.tool_call_id must be a string")
    stream = body.get("stream")
    _expect(stream is None or isinstance(stream, bool), "stream", "stream must be a boolean")
    so = body.get("stream_options")
    _expect(so is None or isinstance(so, dict), "stream_options", "stream_options must be an object")
    if isinstance(so, dict) and "include_usage" in so:
        _expect(
            isinstance(so["include_usage"], bool),
            "stream_options.include_usage",
            "include_usage must be a boolean",
        )
    _positive_int(body, "max_tokens")
    _positive_int(body, "max_completion_tokens")
    _positive_int(body, "n")
    _number(body, "temperature", 0.0, 2.0)
    _number(body, "top_p", 0.0, 1.0)
    _number(body, "presence_penalty", -2.0, 2.0)
    _number(body, "frequency_penalty", -2.0, 2.0)
    tools = body.get("tools")
    if tools is not None:
        _expect(isinstance(tools, list), "tools", "tools must be an array")
        for j, t in enumerate(tools):
            _expect(isinstance(t, dict), f"tools[{j}]", f"tools[{j}] must be an object")
    rf = body.get("response_format")
    _expect(rf is None or isinstance(rf, dict), "response_format", "response_format must be an object")
    user = body.get("user")
    _expect(user is None or isinstance(user, str), "user", "user must be a string")
    _check_metadata(body.get("metadata"))


def _check_metadata(meta: Any) -> None:
    """OpenAI's ``metadata``: an object of at most 16 string values (keys up to 64 characters,
    values up to 512)."""
    if meta is None:
        return
    _expect(
        isinstance(meta, dict),
        "metadata",
        f"metadata must be an object of string values, got {_type_name(meta)}",
    )
    _expect(
        len(meta) <= METADATA_MAX_KEYS,
        "metadata",
        f"metadata has {len(meta)} keys; at most {METADATA_MAX_KEYS} are allowed",
    )
    for k, v in meta.items():
        _expect(
            len(k) <= METADATA_MAX_KEY_CHARS,
            "metadata",
            f"metadata keys must be at most {METADATA_MAX_KEY_CHARS} characters",
        )
        _expect(
            isinstance(v, str),
            "metadata",
            f"metadata values must be strings, got {_type_name(v)}",
        )
        _expect(
            len(v) <= METADATA_MAX_VALUE_CHARS,
            "metadata",
            f"metadata values must be at most {METADATA_MAX_VALUE_CHARS} characters",
        )
