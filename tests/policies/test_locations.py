"""The shared text-location walker (``policies.builtin.locations``), used by pii, secrets, limits
and read-only checks."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

from policies.builtin.locations import (
    TextSite,
    iter_message_texts,
    message_texts,
    rewrite_messages,
    rewrite_tool_calls,
)

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "sys"},
    {"role": "user", "name": "ana", "content": [{"type": "text", "text": "u1"}, {"type": "image_url"}]},
    {
        "role": "assistant",
        "content": "a",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": "y"}'}}
        ],
        "function_call": {"name": "g", "arguments": "raw"},
    },
    {"role": "tool", "tool_call_id": "c1", "content": "result"},
]


def test_iter_message_texts_names_every_location() -> None:
    got = [(s.location, s.role, s.message_index, t) for s, t in iter_message_texts(MESSAGES)]
    assert got == [
        ("messages[0].content", "system", 0, "sys"),
        ("messages[1].content[0].text", "user", 1, "u1"),
        ("messages[2].content", "assistant", 2, "a"),
        ("messages[2].tool_calls[0].function.arguments", "assistant", 2, '{"x": "y"}'),
        ("messages[2].function_call.arguments", "assistant", 2, "raw"),
        ("messages[3].content", "tool", 3, "result"),
    ]
    assert [s.location for s, _ in iter_message_texts(MESSAGES, roles={"tool"}, start=1)] == [
        "messages[3].content"
    ]


def test_rewrite_messages_copies_only_what_changed() -> None:
    before = copy.deepcopy(MESSAGES)
    seen: list[TextSite] = []

    def upper(site: TextSite, text: str) -> str | None:
        seen.append(site)
        return text.upper() if text in ("y", "result", "raw") else None

    out = rewrite_messages(MESSAGES, upper)
    assert before == MESSAGES
    assert out is not None
    assert out[0] is MESSAGES[0] and out[1] is MESSAGES[1]
    assert json.loads(out[2]["tool_calls"][0]["function"]["arguments"]) == {"x": "Y"}
    assert out[2]["function_call"] == {"name": "g", "arguments": "RAW"}
    assert out[3]["content"] == "RESULT" and out[3]["tool_call_id"] == "c1"
    assert TextSite("messages[2].tool_calls[0].function.arguments", "assistant", 2, "$.x") in seen
    assert rewrite_messages(MESSAGES, lambda s, t: None) is None
    assert rewrite_messages(MESSAGES, lambda s, t: t) is None  # identical output = unchanged


def test_rewrite_tool_calls_paths_and_non_string_values() -> None:
    args = json.dumps({"items": [{"n": 1, "tag": "a"}, True, None, 2.5]})
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": args}}]
    paths: list[str | None] = []

    def record(site: TextSite, text: str) -> str | None:
        paths.append(site.json_path)
        return None

    assert rewrite_tool_calls(calls, record) is None
    # Keys are visited as text too, at a path that never holds the key itself.
    assert paths == [
        "$.<key 0>",
        "$.items[0].<key 0>",
        "$.items[0].n",
        "$.items[0].<key 1>",
        "$.items[0].tag",
    ]


def test_object_keys_in_tool_call_arguments_are_rewritten_in_place() -> None:
    # Regression (fresh-user trial): {"jane@x.com": 1} in tool-call arguments reached the upstream.
    args = json.dumps({"jane@x.com": {"4111 1111 1111 1111": ["ok"]}, "to": "b", "z": 1})
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": args}}]

    def mask(site: TextSite, text: str) -> str | None:
        return "<PII>" if ("@" in text or text.startswith("4111")) else None

    out = rewrite_tool_calls(calls, mask)
    assert out is not None
    doc = json.loads(out[0]["function"]["arguments"])
    assert doc == {"<PII>": {"<PII>": ["ok"]}, "to": "b", "z": 1}
    assert list(doc) == ["<PII>", "to", "z"]  # key order kept


class _Msg(Mapping[str, Any]):
    """A read-only ``Mapping`` message that is not a ``dict`` (the walkers' slow path)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


ODD: list[Any] = [
    *MESSAGES,
    "not a message",
    None,
    {"role": 7, "content": "numeric role"},
    {"content": "no role"},
    {"role": "user", "content": ""},
    {"role": "user", "content": ["bare string part", {"text": 3}, {"type": "text", "text": "p"}]},
    {"role": "assistant", "tool_calls": "not a list", "function_call": {"arguments": 5}},
    {"role": "assistant", "tool_calls": [None, {"function": {"arguments": ""}}, {"function": "x"}]},
    {"role": "function", "name": "legacy", "content": "function result"},
    _Msg({"role": "user", "content": "from a Mapping", "function_call": {"arguments": "m"}}),
]


def test_message_texts_are_exactly_the_texts_iter_message_texts_yields() -> None:
    texts = [t for _, t in iter_message_texts(ODD)]
    assert list(message_texts(ODD)) == texts
    assert "numeric role" in texts and "from a Mapping" in texts and "m" in texts
    assert "" not in texts and "bare string part" not in texts


def test_the_walkers_treat_a_mapping_like_a_dict_and_a_numeric_role_as_its_text() -> None:
    as_dicts = [dict(m) if isinstance(m, _Msg) else m for m in ODD]
    assert [(s, t) for s, t in iter_message_texts(ODD)] == list(iter_message_texts(as_dicts))
    sites = {s.location: s.role for s, _ in iter_message_texts(ODD, roles={"7", "function"})}
    assert sites == {"messages[6].content": "7", "messages[12].content": "function"}
    out = rewrite_messages(ODD, lambda site, text: text.upper(), roles={"7", "user"})
    assert out is not None
    assert out[6]["content"] == "NUMERIC ROLE" and out[13]["content"] == "FROM A MAPPING"
    assert out[13]["function_call"] == {"arguments": "M"} and out[8] is ODD[8]
