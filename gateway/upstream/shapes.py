"""One boundary for upstream reply shapes: a non-streamed reply must be a chat completion and each
stream chunk a ``chat.completion.chunk`` before anything downstream (the post_call stage, the
stream guard, the audit record) reads them. Anything else (``choices: [null]``, ``choices: "x"``,
``message: "str"``, a missing ``message``, ``content`` of the wrong type, ``tool_calls`` that are
not a list of objects, ``usage`` that is not an object) is ``UpstreamInvalidResponse``: HTTP 502
``upstream_invalid_response``, retried and fallen back like other upstream faults
(``gateway.upstream.router``), recorded with its interaction id (issue 10: such a reply once gave
500 ``internal_error`` with no record).

The shapes follow the OpenAI API reference (``chat.completion`` and ``chat.completion.chunk``
objects); fields rollguard does not read may be anything. ``content`` may be a string, null or a
list of parts (some OpenAI-compatible servers send parts). A stream chunk may carry no
``choices`` at all (the usage chunk has ``[]``; some servers send keep-alive objects).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.upstream.errors import AttemptFailed, failed
from rollguard.errors import UpstreamInvalidResponse

__all__ = ["check_chunk", "check_completion", "shape_problem"]


def _message_problem(msg: Any, where: str) -> str | None:
    if not isinstance(msg, Mapping):
        return f"{where} is not an object"
    content = msg.get("content")
    if content is not None and not isinstance(content, str | list):
        return f"{where}.content is not a string, a list or null"
    if isinstance(content, list) and not all(isinstance(p, Mapping) for p in content):
        return f"{where}.content has a part that is not an object"
    calls = msg.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list) or not all(isinstance(c, Mapping) for c in calls):
            return f"{where}.tool_calls is not a list of objects"
        for i, call in enumerate(calls):
            fn = call.get("function")
            if fn is not None and not isinstance(fn, Mapping):
                return f"{where}.tool_calls[{i}].function is not an object"
            args = fn.get("arguments") if isinstance(fn, Mapping) else None
            if args is not None and not isinstance(args, str):
                return f"{where}.tool_calls[{i}].function.arguments is not a string"
    return None


def _choices_problem(obj: Any, part: str, *, required: bool) -> str | None:
    if not isinstance(obj, Mapping):
        return "the reply is not a JSON object"
    usage = obj.get("usage")
    if usage is not None and not isinstance(usage, Mapping):
        return "usage is not an object"
    if "choices" not in obj:
        return "choices is missing" if required else None
    choices = obj["choices"]
    if not isinstance(choices, list):
        return "choices is not a list"
    for i, choice in enumerate(choices):
        if not isinstance(choice, Mapping):
            return f"choices[{i}] is not an object"
        if "index" in choice and not isinstance(choice["index"], int):
            return f"choices[{i}].index is not an integer"
        reason = choice.get("finish_reason")
        if reason is not None and not isinstance(reason, str):
            return f"choices[{i}].finish_reason is not a string"
        if part in choice or required:
            problem = _message_problem(choice.get(part), f"choices[{i}].{part}")
            if problem is not None:
                return problem
    return None


def shape_problem(obj: Any, *, stream: bool) -> str | None:
    """What is wrong with ``obj`` as a ``chat.completion`` (``stream=False``: ``choices`` a list of
    objects each with a ``message`` object) or a ``chat.completion.chunk`` (``stream=True``:
    ``choices``, when present, a list of objects whose ``delta``, when present, is an object);
    None when nothing is. Names the path, never a value (the reply may quote the request)."""
    if stream:
        return _choices_problem(obj, "delta", required=False)
    return _choices_problem(obj, "message", required=True)


def _invalid(problem: str, stream: bool) -> AttemptFailed:
    what = "stream chunk" if stream else "completion"
    return failed(UpstreamInvalidResponse(f"the upstream sent an invalid {what}: {problem}"), None)


def check_completion(obj: Any) -> dict[str, Any]:
    """``obj`` when it is a valid ``chat.completion``; raises ``AttemptFailed`` with
    ``UpstreamInvalidResponse`` (502, retried, falls back) otherwise."""
    problem = shape_problem(obj, stream=False)
    if problem is not None:
        raise _invalid(problem, stream=False)
    return dict(obj)


def check_chunk(obj: Any) -> dict[str, Any]:
    """``obj`` when it is a valid ``chat.completion.chunk``; raises ``AttemptFailed`` with
    ``UpstreamInvalidResponse`` otherwise (before the first chunk: retried; after it: the stream
    ends with an error, as for a broken stream)."""
    problem = shape_problem(obj, stream=True)
    if problem is not None:
        raise _invalid(problem, stream=True)
    return obj if isinstance(obj, dict) else dict(obj)
