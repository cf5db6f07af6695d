"""The options of an OpenAI chat-completion request body (everything but ``model`` and
``messages``): types, OpenAI's ranges and sets of values, and the rules between options
(``stream_options`` only with ``stream: true``; a ``tool_choice`` names a function in ``tools``).
Shapes follow the OpenAI API reference for ``POST /v1/chat/completions``.

Errors raised: ``InvalidRequest`` (400) naming ``param`` the way OpenAI does; ``code:
invalid_value`` for a value of the right type outside its range or set. The client's values are
not echoed. Used by ``gateway.chat_request``; the OpenAPI schema (``gateway.routes.chat_schema``)
states the same rules.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.chat_history import check_parts
from rollguard.errors import InvalidRequest

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


def type_name(v: Any) -> str:
    """The JSON type name of a parsed JSON value (``object``, ``array``, ``string``, ...)."""
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
    }.get(type(v), "null" if v is None else type(v).__name__)


def expect(cond: bool, param: str, message: str) -> None:
    """Raise ``InvalidRequest(message, param=param)`` unless ``cond``."""
    if not cond:
        raise InvalidRequest(message, param=param)


def out_of_range(message: str, param: str) -> InvalidRequest:
    """OpenAI's answer to a value of the right type outside its range: 400 ``invalid_value``."""
    return InvalidRequest(message, param=param, code="invalid_value")


def is_str(v: Any) -> bool:
    """``v`` is a string."""
    return isinstance(v, str)


def _number(body: dict[str, Any], name: str, lo: float, hi: float) -> None:
    v = body.get(name)
    if v is None:
        return
    expect(
        isinstance(v, int | float) and not isinstance(v, bool),
        name,
        f"{name} must be a number, got {type_name(v)}",
    )
    if not lo <= v <= hi:
        raise out_of_range(f"{name} must be between {lo} and {hi}, got {v}", name)


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
    expect(
        isinstance(v, int) and not isinstance(v, bool),
        name,
        f"{name} must be an integer"
        + (" of 64 bits" if isinstance(v, float) and v.is_integer() else "")
        + f", got {type_name(v)}",
    )
    if not lo <= v <= hi:
        raise out_of_range(f"{name} must be between {lo} and {hi}, got {v}", name)


BOOLEANS = ("stream", "logprobs", "parallel_tool_calls", "store")
STRINGS = ("user", "prompt_cache_key", "safety_identifier")
ENUMS: dict[str, tuple[str, ...]] = {
    "reasoning_effort": ("none", "minimal", "low", "medium", "high", "xhigh"),
    "service_tier": ("auto", "default", "flex", "scale", "priority"),
    "verbosity": ("low", "medium", "high"),
}
"""Options that are a boolean, a string, or one string of a set (OpenAI API reference)."""
MODALITIES = ("text", "audio")
STREAM_OPTION_FLAGS = ("include_usage", "include_obfuscation")
LOGIT_BIAS_KEY = r"^[0-9]+$"
"""A ``logit_bias`` key: a token id written as a string of digits."""
_LOGIT_BIAS_KEY = re.compile(LOGIT_BIAS_KEY)
LOGIT_BIAS_RANGE = (-100, 100)


def check_options(body: dict[str, Any]) -> None:
    """The scalar request options: types, OpenAI's ranges and sets of values."""
    for flag in BOOLEANS:
        v = body.get(flag)
        expect(v is None or isinstance(v, bool), flag, f"{flag} must be a boolean")
    for name in STRINGS:
        v = body.get(name)
        expect(v is None or isinstance(v, str), name, f"{name} must be a string")
    for name, allowed in ENUMS.items():
        _enum(body.get(name), name, allowed, optional=True)
    for name, (ilo, ihi) in INT_RANGES.items():
        _integer(body, name, ilo, ihi)
    for name, (lo, hi) in RANGES.items():
        _number(body, name, lo, hi)
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        expect(
            isinstance(stop, list) and all(is_str(s) for s in stop),
            "stop",
            "stop must be a string or an array of strings",
        )
        if len(stop) > MAX_STOP:
            raise out_of_range(f"stop holds {len(stop)} sequences; at most {MAX_STOP} are allowed", "stop")
    modalities = body.get("modalities")
    if modalities is not None:
        expect(isinstance(modalities, list), "modalities", "modalities must be an array")
        for j, v in enumerate(modalities):
            _enum(v, f"modalities[{j}]", MODALITIES)
    _check_stream_options(body)
    _check_response_format(body.get("response_format"))
    _check_logit_bias(body.get("logit_bias"))
    _check_prediction(body.get("prediction"))


def _enum(v: Any, param: str, allowed: tuple[str, ...], optional: bool = False) -> None:
    """``v`` is one of ``allowed`` (or None when ``optional``); a string outside the set is
    ``invalid_value``, as OpenAI answers. The value itself is not echoed."""
    if v is None and optional:
        return
    expect(is_str(v), param, f"{param} must be a string")
    if v not in allowed:
        raise out_of_range(f"{param} must be one of {list(allowed)}", param)


def _check_stream_options(body: dict[str, Any]) -> None:
    """``stream_options`` is an object of booleans, and only with ``stream: true`` (OpenAI: 400
    "The 'stream_options' parameter is only allowed when 'stream' is enabled")."""
    so = body.get("stream_options")
    if so is None:
        return
    expect(isinstance(so, dict), "stream_options", "stream_options must be an object")
    for flag in STREAM_OPTION_FLAGS:
        v = so.get(flag)
        expect(v is None or isinstance(v, bool), f"stream_options.{flag}", f"{flag} must be a boolean")
    expect(
        body.get("stream") is True,
        "stream_options",
        "stream_options is only allowed when stream is true",
    )


def _check_response_format(rf: Any) -> None:
    """``{type: text}``, ``{type: json_object}`` or ``{type: json_schema, json_schema: {name,
    description?, schema?, strict?}}`` (``name`` by the tool-name rule, ``TOOL_NAME_PATTERN``)."""
    if rf is None:
        return
    expect(isinstance(rf, dict), "response_format", "response_format must be an object")
    _enum(rf.get("type"), "response_format.type", RESPONSE_FORMATS)
    if rf["type"] != "json_schema":
        return
    p = "response_format.json_schema"
    js = rf.get("json_schema")
    expect(isinstance(js, dict), p, f"{p} must be an object")
    name = js.get("name")
    expect(
        is_str(name) and _TOOL_NAME.match(name) is not None,
        f"{p}.name",
        f"{p}.name must match {TOOL_NAME_PATTERN} (letters, digits, _ and -, at most 64)",
    )
    for key, kind, ok in (("description", "a string", is_str), ("strict", "a boolean", _is_bool)):
        expect(js.get(key) is None or ok(js[key]), f"{p}.{key}", f"{p}.{key} must be {kind}")
    schema = js.get("schema")
    expect(schema is None or isinstance(schema, dict), f"{p}.schema", f"{p}.schema must be an object")


RESPONSE_FORMATS = ("text", "json_object", "json_schema")


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _check_logit_bias(lb: Any) -> None:
    """``logit_bias``: token ids (strings of digits) -> integer biases in -100..100. A whole float
    (``5.0``) is made the integer in place."""
    if lb is None:
        return
    expect(isinstance(lb, dict), "logit_bias", "logit_bias must be an object")
    lo, hi = LOGIT_BIAS_RANGE
    for key, v in lb.items():
        expect(
            _LOGIT_BIAS_KEY.match(key) is not None,
            "logit_bias",
            "logit_bias keys must be token ids written as strings of digits",
        )
        if isinstance(v, float) and v.is_integer() and lo <= v <= hi:
            v = lb[key] = int(v)
        expect(
            isinstance(v, int) and not isinstance(v, bool),
            "logit_bias",
            f"logit_bias values must be integers, got {type_name(v)}",
        )
        if not lo <= v <= hi:
            raise out_of_range(f"logit_bias values must be between {lo} and {hi}", "logit_bias")


def _check_prediction(pred: Any) -> None:
    """``prediction``: ``{type: content, content: string or text parts}``."""
    if pred is None:
        return
    expect(isinstance(pred, dict), "prediction", "prediction must be an object")
    _enum(pred.get("type"), "prediction.type", ("content",))
    content = pred.get("content")
    if not isinstance(content, str):
        p = "prediction.content"
        expect(isinstance(content, list), p, f"{p} must be a string or an array of text parts")
        check_parts(content, "prediction.content", "system")


def check_tools(tools: Any) -> None:
    """``tools``: at most 128 function tools, each named by OpenAI's rule (``TOOL_NAME_PATTERN``)."""
    if tools is None:
        return
    expect(isinstance(tools, list) and len(tools) > 0, "tools", "tools must be a non-empty array")
    if len(tools) > MAX_TOOLS:
        raise out_of_range(f"tools holds {len(tools)} tools; at most {MAX_TOOLS} are allowed", "tools")
    for j, t in enumerate(tools):
        p = f"tools[{j}]"
        expect(isinstance(t, dict), p, f"{p} must be an object")
        expect(t.get("type") == "function", f"{p}.type", f"{p}.type must be 'function'")
        fn = t.get("function")
        expect(isinstance(fn, dict), f"{p}.function", f"{p}.function must be an object")
        name = fn.get("name")
        expect(
            is_str(name) and _TOOL_NAME.match(name) is not None,
            f"{p}.function.name",
            f"{p}.function.name must match {TOOL_NAME_PATTERN} (letters, digits, _ and -, at most 64)",
        )
        params = fn.get("parameters")
        expect(
            params is None or isinstance(params, dict),
            f"{p}.function.parameters",
            f"{p}.function.parameters must be an object (a JSON Schema)",
        )


TOOL_CHOICE_MODES = ("none", "auto", "required")
ALLOWED_TOOLS_MODES = ("auto", "required")


def check_tool_choice(body: dict[str, Any]) -> None:
    """``tool_choice``: ``none``, ``auto``, ``required`` (needs ``tools``), ``{type: function,
    function: {name}}`` or ``{type: allowed_tools, allowed_tools: {mode: auto|required, tools:
    [{type: function, function: {name}}, ...]}}``, every name that of a function in ``tools``
    (OpenAI answers 400 otherwise). ``tools`` is already checked."""
    tc = body.get("tool_choice")
    if tc is None:
        return
    names = {t["function"]["name"] for t in body.get("tools") or ()}
    if isinstance(tc, str):
        _enum(tc, "tool_choice", TOOL_CHOICE_MODES)
        expect(tc != "required" or bool(names), "tool_choice", "tool_choice 'required' needs tools")
        return
    expect(isinstance(tc, dict), "tool_choice", "tool_choice must be a string or an object")
    _enum(tc.get("type"), "tool_choice.type", ("function", "allowed_tools"))
    if tc["type"] == "function":
        _named_function(tc, "tool_choice", names)
        return
    p = "tool_choice.allowed_tools"
    allowed = tc.get("allowed_tools")
    if not isinstance(allowed, dict):
        raise InvalidRequest(f"{p} must be an object", param=p)
    _enum(allowed.get("mode"), f"{p}.mode", ALLOWED_TOOLS_MODES)
    chosen = allowed.get("tools")
    if not isinstance(chosen, list) or not chosen:
        raise InvalidRequest(f"{p}.tools must be a non-empty array", param=f"{p}.tools")
    for j, t in enumerate(chosen):
        expect(isinstance(t, dict), f"{p}.tools[{j}]", f"{p}.tools[{j}] must be an object")
        _enum(t.get("type"), f"{p}.tools[{j}].type", ("function",))
        _named_function(t, f"{p}.tools[{j}]", names)


def _named_function(choice: dict[str, Any], p: str, names: set[str]) -> None:
    fn = choice.get("function")
    if not isinstance(fn, dict):
        raise InvalidRequest(f"{p}.function must be an object", param=f"{p}.function")
    name = fn.get("name")
    expect(is_str(name), f"{p}.function.name", f"{p}.function.name must be a string")
    if name not in names:
        raise out_of_range(f"{p}.function.name names no function in tools", f"{p}.function.name")


def check_metadata(meta: Any) -> None:
    """OpenAI's ``metadata``: an object of at most 16 string values (keys up to 64 characters,
    values up to 512)."""
    if meta is None:
        return
    expect(
        isinstance(meta, dict),
        "metadata",
        f"metadata must be an object of string values, got {type_name(meta)}",
    )
    expect(
        len(meta) <= METADATA_MAX_KEYS,
        "metadata",
        f"metadata has {len(meta)} keys; at most {METADATA_MAX_KEYS} are allowed",
    )
    for k, v in meta.items():
        expect(
            len(k) <= METADATA_MAX_KEY_CHARS,
            "metadata",
            f"metadata keys must be at most {METADATA_MAX_KEY_CHARS} characters",
        )
        expect(isinstance(v, str), "metadata", f"metadata values must be strings, got {type_name(v)}")
        expect(
            len(v) <= METADATA_MAX_VALUE_CHARS,
            "metadata",
            f"metadata values must be at most {METADATA_MAX_VALUE_CHARS} characters",
        )
