"""The chat-completion validator: history a real provider refuses is a 400 naming the message in
OpenAI's ``param`` style; values out of range are 400 ``invalid_value`` (never 422); integers are
64-bit; per-role message rules. Pure functions, no servers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.chat_history import check_arguments
from gateway.chat_request import validate_chat_request
from gateway.detector_scope import key_tenant, scope_summary
from gateway.text_checks import has_lone_surrogate
from rollguard.errors import InvalidRequest


def _call(cid: str, args: str = '{"city": "Paris"}', name: str = "weather") -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def _body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages), **extra}


USER = {"role": "user", "content": "weather in Paris and Rome?"}


def _refused(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        validate_chat_request(body)
    assert info.value.status == 400
    return info.value


def test_a_full_tool_round_trip_is_accepted() -> None:
    validate_chat_request(
        _body(
            USER,
            {"role": "assistant", "content": None, "tool_calls": [_call("c1"), _call("c2", "")]},
            {"role": "tool", "tool_call_id": "c2", "content": "rain"},
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "sun"}]},
            {"role": "assistant", "content": "Sun in Paris, rain in Rome."},
            USER,
        )
    )


@pytest.mark.parametrize(
    "args",
    ['{"a":1}{"b":2}', '{"a": 1', "[1, 2]", '"x"', "null", " ", "{'a': 1}"],
    ids=["glued-objects", "truncated", "array", "string", "null", "blank", "python-repr"],
)
def test_tool_call_arguments_that_are_not_one_json_object_are_400(args: str) -> None:
    err = _refused(
        _body(
            USER,
            {"role": "assistant", "tool_calls": [_call("c0"), _call("c1", args)]},
            {"role": "tool", "tool_call_id": "c0", "content": "x"},
            {"role": "tool", "tool_call_id": "c1", "content": "x"},
        )
    )
    assert err.param == "messages[1].tool_calls[1].function.arguments"
    assert "JSON object" in err.message


def test_function_call_arguments_are_checked_too() -> None:
    msg = {"role": "assistant", "function_call": {"name": "f", "arguments": '{"a":1}{"b":2}'}}
    assert _refused(_body(USER, msg)).param == "messages[1].function_call.arguments"


def test_a_tool_message_without_a_matching_call_is_400() -> None:
    err = _refused(
        _body(
            USER,
            {"role": "assistant", "tool_calls": [_call("c1")]},
            {"role": "tool", "tool_call_id": "c1", "content": "x"},
            {"role": "tool", "tool_call_id": "c9", "content": "x"},
        )
    )
    assert err.param == "messages[3].tool_call_id"
    assert "must be a response to a preceding message with 'tool_calls'" in err.message
    # A tool message with no assistant call before it at all, and one answering a call twice.
    assert _refused(_body({"role": "tool", "tool_call_id": "c1", "content": "x"})).param == (
        "messages[0].tool_call_id"
    )
    twice = _body(
        USER,
        {"role": "assistant", "tool_calls": [_call("c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": "x"},
        {"role": "tool", "tool_call_id": "c1", "content": "x"},
    )
    assert _refused(twice).param == "messages[3].tool_call_id"


def test_a_tool_message_after_another_message_answers_nothing() -> None:
    late = _body(
        USER,
        {"role": "assistant", "tool_calls": [_call("c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": "x"},
        USER,
        {"role": "tool", "tool_call_id": "c1", "content": "again"},
    )
    assert _refused(late).param == "messages[4].tool_call_id"


def test_unanswered_tool_calls_are_400_naming_the_assistant_message() -> None:
    before_user = _body(USER, {"role": "assistant", "tool_calls": [_call("c1"), _call("c2")]}, USER)
    err = _refused(before_user)
    assert (
        err.param == "messages[1].tool_calls"
        and "2 call(s) have no response before messages[2]" in err.message
    )
    at_end = _body(USER, {"role": "assistant", "tool_calls": [_call("c1")]})
    assert "at the end of messages" in _refused(at_end).message


def test_repeated_tool_call_ids_are_400() -> None:
    msg = {"role": "assistant", "tool_calls": [_call("c1"), _call("c1")]}
    assert _refused(_body(USER, msg)).param == "messages[1].tool_calls[1].id"


def test_the_error_does_not_echo_client_values() -> None:
    secret_id = "call_jane.roe@example.com"
    err = _refused(_body({"role": "tool", "tool_call_id": secret_id, "content": "x"}))
    assert secret_id not in err.message
    err = _refused(_body({"role": "wizard@example.com", "content": "x"}))
    assert "wizard" not in err.message


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "assistant", "tool_calls": []}, "messages[0].tool_calls"),
        (
            {"role": "assistant", "tool_calls": [{"type": "function", "function": {}}]},
            "messages[0].tool_calls[0].id",
        ),
        (
            {"role": "assistant", "tool_calls": [{**_call("c"), "type": "x"}]},
            "messages[0].tool_calls[0].type",
        ),
        ({"role": "user", "content": "x", "tool_calls": [_call("c")]}, "messages[0].tool_calls"),
        ({"role": "user", "content": "x", "refusal": "no"}, "messages[0].refusal"),
        (
            {"role": "system", "content": [{"type": "image_url", "image_url": {}}]},
            "messages[0].content[0].type",
        ),
        ({"role": "function", "content": "x"}, "messages[0].name"),
        (
            {"role": "function", "name": "f", "content": [{"type": "text", "text": "x"}]},
            "messages[0].content",
        ),
        ({"role": "user", "content": None}, "messages[0].content"),
        ({"role": "assistant", "content": None}, "messages[0].content"),
    ],
)
def test_per_role_message_rules(message: dict[str, Any], param: str) -> None:
    assert _refused(_body(message)).param == param


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 0),
        ("n", 129),
        ("top_logprobs", 21),
        ("temperature", 2.5),
        ("top_p", -0.1),
        ("presence_penalty", 3),
        ("seed", 2**63),
        ("max_tokens", 1e30),
        ("stop", ["a", "b", "c", "d", "e"]),
        ("tools", [{"type": "function", "function": {"name": "f"}}] * 129),
    ],
)
def test_values_out_of_range_are_400_invalid_value(field: str, value: Any) -> None:
    err = _refused(_body(USER, **{field: value}))
    assert err.param == field
    assert err.code == "invalid_value" or (field == "max_tokens" and isinstance(value, float))


def test_whole_floats_are_integers_and_reach_the_upstream_as_integers() -> None:
    body = _body(USER, max_tokens=16.0, seed=-3.0, n=None)
    validate_chat_request(body)
    assert body["max_tokens"] == 16 and isinstance(body["max_tokens"], int)
    assert body["seed"] == -3 and isinstance(body["seed"], int)
    json.dumps(body)
    assert _refused(_body(USER, max_tokens=1.5)).param == "max_tokens"


@pytest.mark.parametrize("name", ["send mail", "x" * 65, "", "naïve"])
def test_tool_names_follow_openais_rule(name: str) -> None:
    tools = [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}]
    assert _refused(_body(USER, tools=tools)).param == "tools[0].function.name"


def test_check_arguments_accepts_an_object_or_nothing() -> None:
    check_arguments("", "p")
    check_arguments('{"a": [1, {"b": null}]}', "p")
    with pytest.raises(InvalidRequest):
        check_arguments("{}{}", "p")


def test_lone_surrogates_are_told_apart_from_pairs() -> None:
    assert has_lone_surrogate(json.loads('"a\\ud800b"'))
    assert has_lone_surrogate(json.loads('"\\udfff"'))
    assert not has_lone_surrogate(json.loads('"\\ud83d\\ude00"'))  # a real emoji
    assert not has_lone_surrogate("plain")


SUMMARY: dict[str, Any] = {
    "observations": 40,
    "output": {
        "all": {"refusal": {"n": 40}},
        "tenant=acme": {"refusal": {"n": 30}},
        "tenant=globex": {"refusal": {"n": 10}},
        "model=m": {"refusal": {"n": 40}},
        "model=x|tenant=acme": {"refusal": {"n": 1}},
    },
    "input": {"tenant=globex": {"n": 10}, "variant=canary": {"n": 5}},
    "comparisons": {
        "model=m|tenant=acme|variant=canary": [{"metric": "refusal"}],
        "model=m|tenant=globex|variant=canary": [{"metric": "refusal"}],
    },
    "alerts": {
        "open": [
            {"group_keys": ["tenant=globex", "all"], "open_groups": ["tenant=globex"], "value": 0.4},
            {"group_keys": ["tenant=acme", "all", "tenant=globex"], "open_groups": ["all"], "value": 0.3},
        ],
        "resolved": [{"group_keys": ["all"]}],
        "opened_total": 3,
    },
}


def test_a_tenant_reads_only_its_own_detector_groups() -> None:
    acme = scope_summary(SUMMARY, {"acme"})
    assert acme["tenants"] == ["acme"]
    assert list(acme["output"]) == ["tenant=acme"]  # not all, model=, nor a model named to look like it
    assert acme["input"] == {}
    assert list(acme["comparisons"]) == ["model=m|tenant=acme|variant=canary"]
    assert acme["alerts"]["open"] == [{"group_keys": ["tenant=acme"], "open_groups": [], "value": 0.3}]
    assert acme["alerts"]["resolved"] == []
    assert "observations" not in acme and "opened_total" not in acme["alerts"]
    blob = json.dumps(acme)
    assert "globex" not in blob
    assert scope_summary(SUMMARY, None) is SUMMARY  # an operator sees everything
    assert key_tenant("model=a|tenant=b|variant=c") == "b"
    assert key_tenant("model=a|tenant=evil|variant=c|tenant=b") is None


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "image_url", "image_url": 5}, "messages[0].content[0].image_url"),
        ({"type": "image_url", "image_url": {}}, "messages[0].content[0].image_url.url"),
        (
            {"type": "image_url", "image_url": {"url": "u", "detail": "ultra"}},
            "messages[0].content[0].image_url.detail",
        ),
        (
            {"type": "input_audio", "input_audio": {"data": "AAA", "format": "ogg"}},
            "messages[0].content[0].input_audio.format",
        ),
        (
            {"type": "input_audio", "input_audio": {"format": "wav"}},
            "messages[0].content[0].input_audio.data",
        ),
        ({"type": "file", "file": {"filename": "a.pdf"}}, "messages[0].content[0].file"),
        ({"type": "file", "file": {"file_id": 7}}, "messages[0].content[0].file.file_id"),
        ({"type": "video", "video": {}}, "messages[0].content[0].type"),
        ({"type": "refusal", "refusal": "no"}, "messages[0].content[0].type"),
        ({"type": "text", "text": None}, "messages[0].content[0].text"),
    ],
)
def test_user_content_parts_have_openais_shapes(part: dict[str, Any], param: str) -> None:
    assert _refused(_body({"role": "user", "content": [part]})).param == param


def test_each_role_takes_its_own_part_types() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}
    user_parts = [
        {"type": "text", "text": "look"},
        image,
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-1", "filename": None}},
    ]
    validate_chat_request(_body({"role": "user", "content": user_parts}))
    said = [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"}]
    validate_chat_request(_body(USER, {"role": "assistant", "content": said}))
    err = _refused(_body(USER, {"role": "assistant", "content": [image]}))
    assert err.param == "messages[1].content[0].type" and err.code == "invalid_value"
    assert _refused(_body({"role": "developer", "content": [image]})).param == "messages[0].content[0].type"
    assert "x@y.z" not in _refused(_body({"role": "user", "content": [{"type": "x@y.z"}]})).message


TOOLS = [{"type": "function", "function": {"name": "weather"}}]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"response_format": {"type": "bogus"}}, "response_format.type"),
        ({"response_format": {}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a b"}}},
            "response_format.json_schema.name",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "strict": "yes"}}},
            "response_format.json_schema.strict",
        ),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": 1}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"function": {"name": "nope"}}}, "tool_choice.type"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice.function.name"),
        (
            {"tool_choice": {"type": "function", "function": {"name": "nope"}}, "tools": TOOLS},
            "tool_choice.function.name",
        ),
        (
            {"tool_choice": {"type": "custom", "custom": {"name": "weather"}}, "tools": TOOLS},
            "tool_choice.type",
        ),
        (
            {
                "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "none", "tools": []}},
                "tools": TOOLS,
            },
            "tool_choice.allowed_tools.mode",
        ),
        ({"tools": []}, "tools"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream_options": {"include_usage": True}, "stream": False}, "stream_options"),
        (
            {"stream_options": {"include_obfuscation": 1}, "stream": True},
            "stream_options.include_obfuscation",
        ),
        ({"logit_bias": {"abc": 5}}, "logit_bias"),
        ({"logit_bias": {"-1": 5}}, "logit_bias"),
        ({"logit_bias": {"50256": 500}}, "logit_bias"),
        ({"logit_bias": {"50256": True}}, "logit_bias"),
        ({"logit_bias": {"50256": 1.5}}, "logit_bias"),
        ({"logit_bias": [1]}, "logit_bias"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"store": 1}, "store"),
        ({"seed": "7"}, "seed"),
        ({"user": 7}, "user"),
        ({"safety_identifier": 7}, "safety_identifier"),
        ({"modalities": "text"}, "modalities"),
        ({"modalities": ["text", "video"]}, "modalities[1]"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"service_tier": "gold"}, "service_tier"),
        ({"verbosity": 3}, "verbosity"),
        ({"prediction": {"type": "content"}}, "prediction.content"),
        ({"prediction": {"type": "diff", "content": "x"}}, "prediction.type"),
        (
            {"prediction": {"type": "content", "content": [{"type": "image_url"}]}},
            "prediction.content[0].type",
        ),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ],
)
def test_request_options_have_openais_shapes(extra: dict[str, Any], param: str) -> None:
    err = _refused(_body(USER, **extra))
    assert err.param == param, err.message


def test_values_outside_a_set_are_invalid_value_and_not_echoed() -> None:
    err = _refused(_body(USER, response_format={"type": "jane@example.com"}))
    assert err.code == "invalid_value" and "jane@example.com" not in err.message
    assert "'json_schema'" in err.message
    err = _refused(
        _body(USER, tool_choice={"type": "function", "function": {"name": "jane_doe"}}, tools=TOOLS)
    )
    assert err.code == "invalid_value" and "jane_doe" not in err.message


def test_valid_request_options_are_accepted() -> None:
    schema_format = {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
    }
    allowed = {"mode": "required", "tools": [{"type": "function", "function": {"name": "weather"}}]}
    for extra in (
        {"response_format": {"type": "text"}},
        {"response_format": {"type": "json_object"}},
        {"response_format": schema_format},
        {"tool_choice": "none"},
        {"tool_choice": "auto"},
        {"tool_choice": "required", "tools": TOOLS},
        {"tool_choice": {"type": "function", "function": {"name": "weather"}}, "tools": TOOLS},
        {"tool_choice": {"type": "allowed_tools", "allowed_tools": allowed}, "tools": TOOLS},
        {"stream": True, "stream_options": {"include_usage": True, "include_obfuscation": False}},
        {"stream": False, "stream_options": None},
        {"logit_bias": {"50256": -100, "1": 100.0}},
        {
            "parallel_tool_calls": False,
            "store": True,
            "seed": 7,
            "user": "u",
            "modalities": ["text", "audio"],
        },
        {"reasoning_effort": "minimal", "service_tier": "flex", "verbosity": "low"},
        {"prediction": {"type": "content", "content": [{"type": "text", "text": "x"}]}},
        {"max_completion_tokens": 1},
    ):
        body = _body(USER, **extra)
        validate_chat_request(body)
    assert body["max_completion_tokens"] == 1
    body = _body(USER, logit_bias={"1": 100.0})
    validate_chat_request(body)
    assert body["logit_bias"] == {"1": 100} and isinstance(body["logit_bias"]["1"], int)
