"""The OpenAPI (3.1, JSON Schema 2020-12) description of the chat-completion body and of the answers
the gateway's routes give. The body schema states exactly what ``gateway.chat_request`` accepts
(a body valid here is never answered 400 for its shape, and a body invalid here is refused), except
the rules JSON Schema cannot state, which the descriptions name: a tool call's ``arguments`` is a
JSON object in a string (``format: json-object``) and the tool-call pairing across messages
(``gateway.chat_history``). ``null`` is accepted wherever the validator treats it as "absent".

Kept in step by ``tests/chaos/test_schemathesis.py`` (schemathesis: generated valid bodies are
accepted, invalid ones refused, every answer documented).
"""

from __future__ import annotations

from typing import Any

from gateway.chat_history import AUDIO_FORMATS, IMAGE_DETAILS, PART_TYPES, TEXT_PARTS
from gateway.chat_options import (
    ALLOWED_TOOLS_MODES,
    BOOLEANS,
    ENUMS,
    INT_RANGES,
    LOGIT_BIAS_KEY,
    LOGIT_BIAS_RANGE,
    MAX_STOP,
    MAX_TOOLS,
    METADATA_MAX_KEY_CHARS,
    METADATA_MAX_KEYS,
    METADATA_MAX_VALUE_CHARS,
    MODALITIES,
    RANGES,
    RESPONSE_FORMATS,
    STREAM_OPTION_FLAGS,
    STRINGS,
    TOOL_CHOICE_MODES,
    TOOL_NAME_PATTERN,
)
from gateway.chat_request import MAX_CONTENT_PARTS

Schema = dict[str, Any]


def nullable(schema: Schema) -> Schema:
    """``schema`` or JSON ``null``."""
    return {"anyOf": [schema, {"type": "null"}]}


STRING: Schema = {"type": "string"}
ABSENT: Schema = {"type": "null"}
"""A field that may appear only as ``null`` on this message role (e.g. ``tool_calls`` on a user
message)."""


def _part(ptype: str, inner: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["type", ptype],
        "properties": {"type": {"const": ptype}, ptype: inner},
    }


def _obj(required: list[str], **props: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": props}


PART_SCHEMAS: dict[str, Schema] = {
    "text": _part("text", STRING),
    "refusal": _part("refusal", STRING),
    "image_url": _part(
        "image_url", _obj(["url"], url=STRING, detail=nullable({"enum": list(IMAGE_DETAILS)}))
    ),
    "input_audio": _part(
        "input_audio", _obj(["data", "format"], data=STRING, format={"enum": list(AUDIO_FORMATS)})
    ),
    "file": _part(
        "file",
        {
            **_obj([], file_id=nullable(STRING), file_data=nullable(STRING), filename=nullable(STRING)),
            "anyOf": [
                {"required": ["file_id"], "properties": {"file_id": STRING}},
                {"required": ["file_data"], "properties": {"file_data": STRING}},
            ],
        },
    ),
}
"""One schema per content part type (``gateway.chat_history.check_parts``)."""


def parts(role: str) -> Schema:
    """An array of the content parts ``role`` allows (at most ``MAX_CONTENT_PARTS``)."""
    allowed = PART_TYPES.get(role, TEXT_PARTS)
    item = PART_SCHEMAS[allowed[0]] if len(allowed) == 1 else {"oneOf": [PART_SCHEMAS[t] for t in allowed]}
    return {"type": "array", "maxItems": MAX_CONTENT_PARTS, "items": item}


ARGUMENTS: Schema = {
    "anyOf": [{"const": ""}, {"type": "string", "format": "json-object"}],
    "description": 'one JSON object serialised as a string, e.g. \'{"city": "Paris"}\', or empty; '
    "two objects glued together, a bare value or truncated JSON is a 400",
}
TOOL_CALL: Schema = {
    "type": "object",
    "required": ["id", "type", "function"],
    "properties": {
        "id": STRING,
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name", "arguments"],
            "properties": {"name": STRING, "arguments": ARGUMENTS},
        },
    },
}
FUNCTION_CALL: Schema = {
    "type": "object",
    "required": ["name", "arguments"],
    "properties": {"name": STRING, "arguments": ARGUMENTS},
}


def _message(role: str, required: list[str], **props: Schema) -> Schema:
    base: dict[str, Schema] = {
        "role": {"const": role},
        "name": nullable(STRING),
        "tool_calls": ABSENT,
        "function_call": ABSENT,
        "refusal": ABSENT,
    }
    base.update(props)
    return {"type": "object", "required": ["role", *required], "properties": base}


ASSISTANT_MESSAGE: Schema = {
    **_message(
        "assistant",
        [],
        content=nullable({"anyOf": [STRING, parts("assistant")]}),
        tool_calls=nullable({"type": "array", "minItems": 1, "items": TOOL_CALL}),
        function_call=nullable(FUNCTION_CALL),
        refusal=nullable(STRING),
    ),
    "anyOf": [
        {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
        {"required": ["tool_calls"], "properties": {"tool_calls": {"type": "array"}}},
        {"required": ["function_call"], "properties": {"function_call": {"type": "object"}}},
        {"required": ["refusal"], "properties": {"refusal": STRING}},
    ],
    "description": "content, or tool_calls, a function_call or a refusal instead; every tool call "
    "must be answered by a tool message (its tool_call_id) before the next message of another role",
}

MESSAGE_SCHEMA: Schema = {
    "oneOf": [
        _message("system", ["content"], content={"anyOf": [STRING, parts("system")]}),
        _message("developer", ["content"], content={"anyOf": [STRING, parts("developer")]}),
        _message("user", ["content"], content={"anyOf": [STRING, parts("user")]}),
        ASSISTANT_MESSAGE,
        {
            **_message(
                "tool",
                ["content", "tool_call_id"],
                content={"anyOf": [STRING, parts("tool")]},
                tool_call_id=STRING,
            ),
            "description": "answers a tool call of the assistant message before its run of tool "
            "messages (tool_call_id = that call's id)",
        },
        _message("function", ["name"], name=STRING, content=nullable(STRING)),
    ],
    "description": "an OpenAI chat message; unknown fields are passed through to the model",
}
"""An OpenAI chat message, one schema per role."""

TOOL: Schema = {
    "type": "object",
    "required": ["type", "function"],
    "properties": {
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": TOOL_NAME_PATTERN},
                "description": {},
                "parameters": nullable({"type": "object"}),
            },
        },
    },
}


def _options() -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for name, (lo, hi) in INT_RANGES.items():
        out[name] = nullable({"type": "integer", "minimum": lo, "maximum": hi})
    for name, (flo, fhi) in RANGES.items():
        out[name] = nullable({"type": "number", "minimum": flo, "maximum": fhi})
    out.update({name: nullable({"type": "boolean"}) for name in BOOLEANS})
    out.update({name: nullable(STRING) for name in STRINGS})
    out.update({name: nullable({"enum": list(values)}) for name, values in ENUMS.items()})
    return out


NAMED_FUNCTION: Schema = {
    "type": "object",
    "required": ["type", "function"],
    "properties": {
        "type": {"const": "function"},
        "function": _obj(["name"], name={"type": "string", "pattern": TOOL_NAME_PATTERN}),
    },
    "description": "function.name is the name of a function in tools",
}
TOOL_CHOICE: Schema = {
    "anyOf": [
        {"enum": list(TOOL_CHOICE_MODES)},
        NAMED_FUNCTION,
        {
            "type": "object",
            "required": ["type", "allowed_tools"],
            "properties": {
                "type": {"const": "allowed_tools"},
                "allowed_tools": _obj(
                    ["mode", "tools"],
                    mode={"enum": list(ALLOWED_TOOLS_MODES)},
                    tools={"type": "array", "minItems": 1, "items": NAMED_FUNCTION},
                ),
            },
        },
    ],
    "description": "every function named is one of tools; 'required' or an object needs tools",
}
RESPONSE_FORMAT: Schema = {
    "oneOf": [
        *(
            {"type": "object", "required": ["type"], "properties": {"type": {"const": t}}}
            for t in RESPONSE_FORMATS
            if t != "json_schema"
        ),
        {
            "type": "object",
            "required": ["type", "json_schema"],
            "properties": {
                "type": {"const": "json_schema"},
                "json_schema": _obj(
                    ["name"],
                    name={"type": "string", "pattern": TOOL_NAME_PATTERN},
                    description=nullable(STRING),
                    schema=nullable({"type": "object"}),
                    strict=nullable({"type": "boolean"}),
                ),
            },
        },
    ]
}
STREAM_OPTIONS_NEED_STREAM: Schema = {
    "if": {"required": ["stream_options"], "properties": {"stream_options": {"type": "object"}}},
    "then": {"required": ["stream"], "properties": {"stream": {"const": True}}},
}
TOOL_CHOICE_NEEDS_TOOLS: Schema = {
    "if": {
        "required": ["tool_choice"],
        "properties": {"tool_choice": {"anyOf": [{"const": "required"}, {"type": "object"}]}},
    },
    "then": {"required": ["tools"], "properties": {"tools": {"type": "array"}}},
}
"""The rules between options: ``stream_options`` only with ``stream: true``; a ``tool_choice`` that
calls a tool needs ``tools``."""


CHAT_REQUEST_SCHEMA: Schema = {
    "type": "object",
    "required": ["model", "messages"],
    "additionalProperties": True,
    "properties": {
        "model": {"type": "string", "minLength": 1, "example": "demo"},
        "messages": {"type": "array", "minItems": 1, "items": MESSAGE_SCHEMA},
        **_options(),
        "user": nullable({"type": "string", "description": "end-user id: flag stickiness (stored hashed)"}),
        "stream_options": nullable(
            _obj([], **{flag: nullable({"type": "boolean"}) for flag in STREAM_OPTION_FLAGS})
        ),
        "stop": nullable({"anyOf": [STRING, {"type": "array", "maxItems": MAX_STOP, "items": STRING}]}),
        "modalities": nullable({"type": "array", "items": {"enum": list(MODALITIES)}}),
        "tools": nullable({"type": "array", "minItems": 1, "maxItems": MAX_TOOLS, "items": TOOL}),
        "tool_choice": nullable(TOOL_CHOICE),
        "response_format": nullable(RESPONSE_FORMAT),
        "logit_bias": nullable(
            {
                "type": "object",
                "propertyNames": {"pattern": LOGIT_BIAS_KEY},
                "additionalProperties": {
                    "type": "integer",
                    "minimum": LOGIT_BIAS_RANGE[0],
                    "maximum": LOGIT_BIAS_RANGE[1],
                },
                "description": "token id (a string of digits) -> bias",
            }
        ),
        "prediction": nullable(
            _obj(["type", "content"], type={"const": "content"}, content={"anyOf": [STRING, parts("system")]})
        ),
        "metadata": nullable(
            {
                "type": "object",
                "maxProperties": METADATA_MAX_KEYS,
                "propertyNames": {"maxLength": METADATA_MAX_KEY_CHARS},
                "additionalProperties": {"type": "string", "maxLength": METADATA_MAX_VALUE_CHARS},
            }
        ),
    },
    "allOf": [STREAM_OPTIONS_NEED_STREAM, TOOL_CHOICE_NEEDS_TOOLS],
    "example": {"model": "demo", "messages": [{"role": "user", "content": "Hello!"}]},
}
"""The ``POST /v1/chat/completions`` body (OpenAI API reference); unknown fields pass through."""


SSE_EVENT: Schema = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "string",
            "description": "a chat.completion.chunk as JSON, an OpenAI-shaped error, or [DONE]",
        },
        "event": STRING,
        "id": STRING,
    },
}
"""One server-sent event (OpenAPI 3.1 reads a ``text/event-stream`` schema as one event's; the
3.2 ``itemSchema`` convention: ``data``, ``event``, ``id``)."""


def ok(schema: Schema, description: str = "OK", *, sse: bool = False) -> dict[int | str, dict[str, Any]]:
    """A documented 200 answer: ``schema`` as JSON, and with ``sse`` also ``text/event-stream``
    (a streamed chat completion: ``data:`` lines, OpenAI's SSE format)."""
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if sse:
        content["text/event-stream"] = {"schema": SSE_EVENT}
    return {200: {"description": description, "content": content}}


CHAT_COMPLETION: Schema = {
    "type": "object",
    "required": ["choices"],
    "properties": {
        "id": STRING,
        "object": STRING,
        "created": {"type": "integer"},
        "model": STRING,
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "message": {"type": "object"},
                    "finish_reason": nullable(STRING),
                },
            },
        },
        "usage": nullable({"type": "object"}),
    },
}
"""The upstream's ``chat.completion`` after the post_call guardrails (OpenAI API reference)."""
