"""The text fields of a non-streamed reply message besides ``content``, so that every output policy
judges them like the content (a fault found in a trial: a slur in tool-call arguments passed).

* ``tool_calls`` are judged as ``CheckContext.completion_tool_calls``; the legacy
  ``function_call`` (``{name, arguments}``) goes along as one more call (``reply_calls``) and is
  put back from the checked calls (``put_calls``), so ``pii`` / ``secrets`` redact it and
  ``content_safety`` / ``system_prompt_leak`` judge it like any tool call.
* every other string field (``refusal``, ``reasoning_content`` of some providers: ``extra_texts``)
  is judged as a completion of its own by the chat service.

A stream has no such fields to judge: ``gateway.streaming.guard`` drops them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["NOT_TEXT", "extra_texts", "put_calls", "reply_calls"]

NOT_TEXT = frozenset({"role", "content", "tool_calls", "function_call", "name"})
"""Message fields that are not extra text: the role, the content and calls (judged as such), the
name (never text to scan, ``policies.builtin.locations``)."""


def reply_calls(msg: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """``(calls, legacy)``: the message's ``tool_calls`` plus its ``function_call`` as a last
    call ``{"id": "", "type": "function", "function": {...}}`` (``legacy`` True then)."""
    calls = [c for c in msg.get("tool_calls") or [] if isinstance(c, dict)]
    fc = msg.get("function_call")
    if isinstance(fc, dict):
        return [*calls, {"id": "", "type": "function", "function": dict(fc)}], True
    return calls, False


def put_calls(msg: dict[str, Any], checked: list[dict[str, Any]], legacy: bool) -> None:
    """Write checked calls back into ``msg``: the last one as ``function_call`` when ``legacy``,
    the rest as ``tool_calls`` (only when the message had them)."""
    if legacy and checked:
        msg["function_call"] = dict(checked[-1].get("function") or {})
        checked = checked[:-1]
    if msg.get("tool_calls"):
        msg["tool_calls"] = checked


def extra_texts(msg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(field, text)`` of every non-empty string field of a reply message that is not in
    ``NOT_TEXT`` (``refusal``, ``reasoning_content``, ...)."""
    return [(k, v) for k, v in msg.items() if k not in NOT_TEXT and isinstance(v, str) and v]
