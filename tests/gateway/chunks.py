"""One streamed chat-completion chunk as an upstream sends it, shared by the streaming tests."""

from __future__ import annotations

from typing import Any


def chunk(
    content: str | None = None, *, index: int = 0, finish: str | None = None, **delta: Any
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` whose choice ``index`` carries ``delta`` (plus ``content``
    when given) and ``finish_reason`` ``finish``."""
    d: dict[str, Any] = dict(delta)
    if content is not None:
        d["content"] = content
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": index, "delta": d, "finish_reason": finish}],
    }
