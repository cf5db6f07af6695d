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
answers 400 there too, never 422). History rules that span messages (tool calls and their answers)
are in ``gateway.chat_history``.

The OpenAPI schema of the body (``gateway.routes.chat_schema``) states these same rules; a test
keeps the two in step (tests/chaos).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request

from gateway.chat_history import check_arguments, check_parts, check_tool_pairing
from gateway.text_checks import LONE_SURROGATE
from rollguard.errors import ClientError, InvalidRequest, PayloadTooLarge

MAX_CONTENT_PARTS = 128
"""Content parts per message. Every part is a text location each guardrail scans separately, so
the count, not only the size, bounds the work one request can cause."""

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

METADATA_MAX_KEYS = 16
METADATA_MAX_KEY_CHARS = 64
METADATA_MAX_VALUE_CHARS = 512
"""OpenAI's limits on ``metadata``: at most 16 pairs, keys up to 64 characters, string values up to
512 characters."""


TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
"""OpenAI's rule for a function name in ``tools``: a-z, A-Z, 0-9, underscores and dashes, at most
64 characters."""
_TOOL_NAME = re.compile(TOOL_NAME_PATTERN)

MAX_TOOLS = 128
"""OpenAI: "A max of 128 functions are supported"."""
MAX_N = 128
MAX_STOP = 4
MAX_TOP_LOGPROBS = 20

RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
"""Inclusive ranges of the sampling parameters (OpenAI API reference)."""

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""Integers are 64-bit (OpenAI's ``seed``; what the JSON writer serialises)."""

INT_RANGES: dict[str, tuple[int, int]] = {
    "max_tokens": (1, INT64_MAX),
    "max_completion_tokens": (1, INT64_MAX),
    "n": (1, MAX_N),
    "top_logprobs": (0, MAX_TOP_LOGPROBS),
    "seed": (INT64_MIN, INT64_MAX),
}
"""Inclusive integer ranges."""


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


def _out_of_range(message: str, param: str) -> InvalidRequest:
    """OpenAI's answer to a value of the right type outside its range: 400 ``invalid_value``."""
    return InvalidRequest(message, param=param, code="invalid_value")


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


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
        raise _out_of_range(f"{name} must be between {lo} and {hi}, got {v}", name)


def _whole(body: dict[str, Any], name: str) -> Any:
    """``body[name]``, a whole-valued 64-bit float (``2.0``, an integer in JSON Schema's sense) made
    an ``int`` in place so the upstream gets an integer."""
    v = body.get(name)
    if isinstance(v, float) and v.is_integer() and INT64_MIN <= v <= INT64_MAX:
        v = body[name] = int(v)
    return v


def _integer(body: dict[str, Any], name: str, lo: int, hi: int) -> None:
    v = _whole(body, name)
    if v is None:
        return
    _expect(
        isinstance(v, int) and not isinstance(v, bool),
        name,
        f"{name} must be an integer"
        + (" of 64 bits" if isinstance(v, float) and v.is_integer() else "")
        + f", got {_type_name(v)}",
    )
    if not lo <= v <= hi:
        raise _out_of_range(f"{name} must be between {lo} and {hi}, got {v}", name)


def _check_content(m: dict[str, Any], param: str, role: str) -> None:
    content = m.get("content")
    if content is None:
        # OpenAI: an assistant message may carry tool_calls, a function_call or a refusal instead;
        # a function message's content may be null.
        alt = (
            bool(m.get("tool_calls")) or isinstance(m.get("function_call"), dict) or _is_str(m.get("refusal"))
        )
        _expect(
            (role == "assistant" and alt) or role == "function",
            param,
            f"{param} is required for role {role!r}",
        )
        return
    if isinstance(content, str):
        return
    _expect(
        isinstance(content, list) and role != "function",
        param,
        f"{param} must be a string" + ("" if role == "function" else " or an array of content parts"),
    )
    if len(content) > MAX_CONTENT_PARTS:
        raise _out_of_range(
            f"{param} has {len(content)} content parts; at most {MAX_CONTENT_PARTS} are accepted", param
        )
    check_parts(content, param, role)


def _check_tool_calls(calls: Any, param: str) -> None:
    _expect(isinstance(calls, list) and len(calls) > 0, param, f"{param} must be a non-empty array")
    for j, call in enumerate(calls):
        p = f"{param}[{j}]"
        _expect(isinstance(call, dict), p, f"{p} must be an object")
        _expect(_is_str(call.get("id")), f"{p}.id", f"{p}.id must be a string")
        _expect(call.get("type") == "function", f"{p}.type", f"{p}.type must be 'function'")
        fn = call.get("function")
        _expect(isinstance(fn, dict), f"{p}.function", f"{p}.function must be an object")
        _expect(_is_str(fn.get("name")), f"{p}.function.name", f"{p}.function.name must be a string")
        args = fn.get("arguments")
        _expect(_is_str(args), f"{p}.function.arguments", f"{p}.function.arguments must be a string")
        check_arguments(args, f"{p}.function.arguments")


def _check_function_call(fc: Any, param: str) -> None:
    """The deprecated ``function_call`` of an assistant message: ``{name, arguments}``."""
    _expect(isinstance(fc, dict), param, f"{param} must be an object")
    _expect(_is_str(fc.get("name")), f"{param}.name", f"{param}.name must be a string")
    args = fc.get("arguments")
    _expect(_is_str(args), f"{param}.arguments", f"{param}.arguments must be a string")
    check_arguments(args, f"{param}.arguments")


def _check_message(m: Any, i: int) -> None:
    p = f"messages[{i}]"
    _expect(isinstance(m, dict), p, f"{p} must be an object, got {_type_name(m)}")
    role = m.get("role")
    _expect(_is_str(role), f"{p}.role", f"{p}.role must be a string")
    _expect(role in ROLES, f"{p}.role", f"{p}.role must be one of {sorted(ROLES)}")
    name = m.get("name")
    _expect(name is None or _is_str(name), f"{p}.name", f"{p}.name must be a string")
    _expect(role != "function" or _is_str(name), f"{p}.name", f"{p}.name is required for role 'function'")
    for key in ("tool_calls", "function_call", "refusal"):
        if m.get(key) is not None:
            _expect(role == "assistant", f"{p}.{key}", f"{p}.{key} is only valid on assistant messages")
    if m.get("tool_calls") is not None:
        _check_tool_calls(m["tool_calls"], f"{p}.tool_calls")
    if m.get("function_call") is not None:
        _check_function_call(m["function_call"], f"{p}.function_call")
    refusal = m.get("refusal")
    _expect(refusal is None or _is_str(refusal), f"{p}.refusal", f"{p}.refusal must be a string")
    _check_content(m, f"{p}.content", role)
    if role == "tool":
        _expect(_is_str(m.get("tool_call_id")), f"{p}.tool_call_id", f"{p}.tool_call_id must be a string")


def validate_chat_request(body: dict[str, Any]) -> None:
    """Check the fields rollguard relies on and the rules a real provider applies; raise
    ``InvalidRequest`` (400) naming ``param`` (e.g. ``messages[2].content``). Unknown fields are
    left alone (passed through to the upstream)."""
    model = body.get("model")
    _expect(model is not None, "model", "you must provide a model parameter")
    _expect(isinstance(model, str) and model != "", "model", "model must be a non-empty string")
    messages = body.get("messages")
    _expect(messages is not None, "messages", "you must provide a messages parameter")
    if not isinstance(messages, list):
        raise InvalidRequest(f"messages must be an array, got {_type_name(messages)}", param="messages")
    _expect(len(messages) > 0, "messages", "messages must contain at least one message")
    for i, m in enumerate(messages):
        _check_message(m, i)
    check_tool_pairing(messages)
    _check_options(body)
    _check_tools(body.get("tools"))
    _check_metadata(body.get("metadata"))


def _check_options(body: dict[str, Any]) -> None:
    """The scalar request options: types and OpenAI's ranges."""
    for flag in ("stream", "logprobs"):
        v = body.get(flag)
        _expect(v is None or isinstance(v, bool), flag, f"{flag} must be a boolean")
    so = body.get("stream_options")
    _expect(so is None or isinstance(so, dict), "stream_options", "stream_options must be an object")
    if isinstance(so, dict) and so.get("include_usage") is not None:
        _expect(
            isinstance(so["include_usage"], bool),
            "stream_options.include_usage",
            "include_usage must be a boolean",
        )
    for name, (ilo, ihi) in INT_RANGES.items():
        _integer(body, name, ilo, ihi)
    for name, (lo, hi) in RANGES.items():
        _number(body, name, lo, hi)
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        _expect(
            isinstance(stop, list) and all(_is_str(s) for s in stop),
            "stop",
            "stop must be a string or an array of strings",
        )
        if len(stop) > MAX_STOP:
            raise _out_of_range(f"stop holds {len(stop)} sequences; at most {MAX_STOP} are allowed", "stop")
    rf = body.get("response_format")
    _expect(rf is None or isinstance(rf, dict), "response_format", "response_format must be an object")
    user = body.get("user")
    _expect(user is None or isinstance(user, str), "user", "user must be a string")


def _check_tools(tools: Any) -> None:
    """``tools``: at most 128 function tools, each named by OpenAI's rule (``TOOL_NAME_PATTERN``)."""
    if tools is None:
        return
    _expect(isinstance(tools, list), "tools", "tools must be an array")
    if len(tools) > MAX_TOOLS:
        raise _out_of_range(f"tools holds {len(tools)} tools; at most {MAX_TOOLS} are allowed", "tools")
    for j, t in enumerate(tools):
        p = f"tools[{j}]"
        _expect(isinstance(t, dict), p, f"{p} must be an object")
        _expect(t.get("type") == "function", f"{p}.type", f"{p}.type must be 'function'")
        fn = t.get("function")
        _expect(isinstance(fn, dict), f"{p}.function", f"{p}.function must be an object")
        name = fn.get("name")
        _expect(
            _is_str(name) and _TOOL_NAME.match(name) is not None,
            f"{p}.function.name",
            f"{p}.function.name must match {TOOL_NAME_PATTERN} (letters, digits, _ and -, at most 64)",
        )
        params = fn.get("parameters")
        _expect(
            params is None or isinstance(params, dict),
            f"{p}.function.parameters",
            f"{p}.function.parameters must be an object (a JSON Schema)",
        )


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
        _expect(isinstance(v, str), "metadata", f"metadata values must be strings, got {_type_name(v)}")
        _expect(
            len(v) <= METADATA_MAX_VALUE_CHARS,
            "metadata",
            f"metadata values must be at most {METADATA_MAX_VALUE_CHARS} characters",
        )
