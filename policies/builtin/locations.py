"""Every place text can hide in a chat completion request or response, for reading and for rewriting.

Text lives in: a message's string ``content``; the ``text`` of each part of a list ``content``
(``{"type": "text", "text": ...}``); an assistant message's ``tool_calls[i].function.arguments`` (a
JSON string) and legacy ``function_call.arguments``; ``tool`` messages' content (same shapes as any
other content); and, on the response side, the completion text and its tool calls. ``name`` fields,
ids and roles are never text to scan.

Location names (used in ``Evidence.location``): ``messages[2].content``,
``messages[2].content[1].text``, ``messages[1].tool_calls[0].function.arguments``,
``messages[1].function_call.arguments``, ``completion``,
``completion_tool_calls[0].function.arguments``.

Two entry points:

- ``iter_message_texts`` (read-only checks): ``(TextSite, text)`` pairs; tool-call arguments are
  yielded as the raw JSON string.
- ``rewrite_messages`` / ``rewrite_tool_calls`` / ``rewrite_text`` (transforms): call a
  ``Rewrite`` on each text and return *new* containers holding only what changed (the input is
  never mutated; unchanged messages are shared, not copied). Tool-call arguments are parsed as JSON,
  every string value (and every integer value, as its decimal text) is rewritten on its own with a
  ``json_path``, and the result is re-serialised with the same keys; arguments that are not valid
  JSON are rewritten as one raw string.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollguard.types import Message

__all__ = [
    "Rewrite",
    "TextSite",
    "iter_message_texts",
    "message_texts",
    "rewrite_messages",
    "rewrite_text",
    "rewrite_tool_calls",
]


@dataclass(frozen=True, slots=True)
class TextSite:
    """Where a text is. ``location`` as documented in the module; ``role`` the message role
    (``assistant`` for completions); ``message_index`` the index in ``messages`` (-1 for the
    completion); ``json_path`` (``$.card.number``, ``$.items[0]``) when the text is one value inside
    JSON tool-call arguments, else ``None``."""

    location: str
    role: str
    message_index: int = -1
    json_path: str | None = None


Rewrite = Callable[[TextSite, str], "str | None"]
"""``(site, text) -> new text``, or ``None`` when the text stays as it is."""


ROLE_ALIASES = {"function": "tool"}
"""Roles judged as another: the legacy ``function`` role carries a tool's result, so a policy
configured for ``tool`` messages guards it too."""


def _wanted(role: str, roles: Collection[str] | None) -> bool:
    return roles is None or role in roles or ROLE_ALIASES.get(role, role) in roles


def iter_message_texts(
    messages: Sequence[Message], *, roles: Collection[str] | None = None, start: int = 0
) -> Iterator[tuple[TextSite, str]]:
    """``(site, text)`` for every text in ``messages[start:]`` whose role is in ``roles`` (all
    roles when ``None``). Tool-call arguments come as their raw JSON string. Never raises for odd
    shapes: anything that is not text is skipped. (Hot: called by most policies on every request,
    so a plain ``dict`` skips the ``Mapping`` ABC check and a message without ``tool_calls`` /
    ``function_call`` keys skips their generator.)"""
    for i in range(max(0, start), len(messages)):
        msg = messages[i]
        if type(msg) is not dict and not isinstance(msg, Mapping):
            continue
        role = msg.get("role", "")
        if type(role) is not str:
            role = str(role)
        if roles is not None and not _wanted(role, roles):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            if content:
                yield TextSite(f"messages[{i}].content", role, i), content
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, Mapping) and isinstance(part.get("text"), str) and part["text"]:
                    yield TextSite(f"messages[{i}].content[{j}].text", role, i), part["text"]
        if "tool_calls" in msg or "function_call" in msg:
            yield from _iter_call_arguments(msg, f"messages[{i}]", role, i)


def message_texts(messages: Sequence[Message]) -> Iterator[str]:
    """The texts ``iter_message_texts(messages)`` yields (every role), in the same order, without
    their ``TextSite``: for callers that need only the strings (``redaction.reserve_lookalikes``,
    three times per request), at about a third of the cost."""
    for msg in messages:
        if type(msg) is not dict and not isinstance(msg, Mapping):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            if content:
                yield content
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str) and part["text"]:
                    yield part["text"]
        if "tool_calls" in msg or "function_call" in msg:
            for _, text in _iter_call_arguments(msg, "", "", 0):
                yield text


def _iter_call_arguments(
    msg: Mapping[str, Any], prefix: str, role: str, index: int
) -> Iterator[tuple[TextSite, str]]:
    calls = msg.get("tool_calls")
    if isinstance(calls, list):
        for k, call in enumerate(calls):
            fn = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(fn, Mapping) and isinstance(fn.get("arguments"), str) and fn["arguments"]:
                yield TextSite(f"{prefix}.tool_calls[{k}].function.arguments", role, index), fn["arguments"]
    fc = msg.get("function_call")
    if isinstance(fc, Mapping) and isinstance(fc.get("arguments"), str) and fc["arguments"]:
        yield TextSite(f"{prefix}.function_call.arguments", role, index), fc["arguments"]


def rewrite_text(site: TextSite, text: str, rewrite: Rewrite) -> str | None:
    """``rewrite(site, text)``; ``None`` when unchanged (an identical result counts as unchanged)."""
    out = rewrite(site, text)
    return None if out is None or out == text else out


def rewrite_messages(
    messages: Sequence[Message], rewrite: Rewrite, *, roles: Collection[str] | None = None
) -> list[Message] | None:
    """A new message list with every text of the selected ``roles`` rewritten, or ``None`` when
    nothing changed. Changed messages are shallow copies with only the changed fields replaced."""
    out: list[Message] | None = None
    for i, msg in enumerate(messages):
        if type(msg) is not dict and not isinstance(msg, Mapping):
            continue
        role = msg.get("role", "")
        if type(role) is not str:
            role = str(role)
        if roles is not None and not _wanted(role, roles):
            continue
        new = _rewrite_message(msg, i, role, rewrite)
        if new is not None:
            if out is None:
                out = list(messages)
            out[i] = new
    return out


def _rewrite_message(msg: Mapping[str, Any], i: int, role: str, rewrite: Rewrite) -> Message | None:
    changed: dict[str, Any] = {}
    content = msg.get("content")
    if isinstance(content, str) and content:
        new_text = rewrite_text(TextSite(f"messages[{i}].content", role, i), content, rewrite)
        if new_text is not None:
            changed["content"] = new_text
    elif isinstance(content, list):
        new_parts: list[Any] | None = None
        for j, part in enumerate(content):
            if isinstance(part, Mapping) and isinstance(part.get("text"), str) and part["text"]:
                site = TextSite(f"messages[{i}].content[{j}].text", role, i)
                new_text = rewrite_text(site, part["text"], rewrite)
                if new_text is not None:
                    if new_parts is None:
                        new_parts = list(content)
                    new_parts[j] = {**part, "text": new_text}
        if new_parts is not None:
            changed["content"] = new_parts
    calls = msg.get("tool_calls")
    if isinstance(calls, list) and calls:
        new_calls = rewrite_tool_calls(calls, rewrite, prefix=f"messages[{i}].tool_calls", role=role, index=i)
        if new_calls is not None:
            changed["tool_calls"] = new_calls
    fc = msg.get("function_call")
    if isinstance(fc, Mapping) and isinstance(fc.get("arguments"), str) and fc["arguments"]:
        site = TextSite(f"messages[{i}].function_call.arguments", role, i)
        new_args = _rewrite_arguments(site, fc["arguments"], rewrite)
        if new_args is not None:
            changed["function_call"] = {**fc, "arguments": new_args}
    if not changed:
        return None
    return {**msg, **changed}


def rewrite_tool_calls(
    tool_calls: Sequence[Any],
    rewrite: Rewrite,
    *,
    prefix: str = "completion_tool_calls",
    role: str = "assistant",
    index: int = -1,
) -> list[dict[str, Any]] | None:
    """New tool calls (OpenAI shape ``{"id", "type", "function": {"name", "arguments"}}``) with
    their arguments rewritten, or ``None`` when nothing changed. Location of call ``k``:
    ``{prefix}[k].function.arguments``."""
    out: list[Any] | None = None
    for k, call in enumerate(tool_calls):
        fn = call.get("function") if isinstance(call, Mapping) else None
        if not (isinstance(fn, Mapping) and isinstance(fn.get("arguments"), str) and fn["arguments"]):
            continue
        site = TextSite(f"{prefix}[{k}].function.arguments", role, index)
        new_args = _rewrite_arguments(site, fn["arguments"], rewrite)
        if new_args is not None:
            if out is None:
                out = list(tool_calls)
            out[k] = {**call, "function": {**fn, "arguments": new_args}}
    return out


def _rewrite_arguments(site: TextSite, raw: str, rewrite: Rewrite) -> str | None:
    """JSON-aware rewrite of a tool call's ``arguments``; raw-string rewrite when not JSON."""
    try:
        parsed = json.loads(raw)
        changed, new = _rewrite_value(site, "$", parsed, rewrite)
        if not changed:
            return None
        return json.dumps(new, ensure_ascii=False)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to walk: treat as raw text
        return rewrite_text(site, raw, rewrite)


def _rewrite_value(site: TextSite, path: str, value: Any, rewrite: Rewrite) -> tuple[bool, Any]:
    if isinstance(value, str):
        if not value:
            return False, value
        new_text = rewrite_text(_at(site, path), value, rewrite)
        return (True, new_text) if new_text is not None else (False, value)
    if isinstance(value, int) and not isinstance(value, bool):
        # A card number sent as a JSON number: rewritten as its decimal text (becomes a string).
        new_text = rewrite_text(_at(site, path), str(value), rewrite)
        return (True, new_text) if new_text is not None else (False, value)
    if isinstance(value, dict):
        # Keys are text too (``{"jane@example.com": 1}``): each is rewritten like a value, at the
        # path ``{path}.<key k>`` so that a location never carries the raw key. The order of the
        # keys is kept; a rewritten key replaces the original in place.
        items: list[tuple[str, Any]] | None = None
        for k, (key, item) in enumerate(value.items()):
            new_key = rewrite_text(_at(site, f"{path}.<key {k}>"), key, rewrite) if key else None
            shown = key if new_key is None else new_key
            changed, new_item = _rewrite_value(site, f"{path}.{shown}", item, rewrite)
            if (new_key is not None or changed) and items is None:
                items = list(value.items())
            if items is not None:
                items[k] = (shown, new_item)
        return (True, dict(items)) if items is not None else (False, value)
    if isinstance(value, list):
        new_list: list[Any] | None = None
        for n, item in enumerate(value):
            changed, new_item = _rewrite_value(site, f"{path}[{n}]", item, rewrite)
            if changed:
                if new_list is None:
                    new_list = list(value)
                new_list[n] = new_item
        return (True, new_list) if new_list is not None else (False, value)
    return False, value


def _at(site: TextSite, path: str) -> TextSite:
    return TextSite(site.location, site.role, site.message_index, path)
