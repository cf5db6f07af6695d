"""``restore_redactions``: the client gets its own values back where a pre_call transform put
vault placeholders (``<EMAIL_ADDRESS_1>``) into what the model saw; the audit record keeps the
placeholders. Applied to a completion's text and tool-call arguments and to released SSE chunks."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.streaming import encode_sse
from policies.base import RedactionVault

__all__ = ["restore_calls", "restore_piece"]


def restore_calls(calls: list[dict[str, Any]], vault: RedactionVault) -> list[dict[str, Any]]:
    """Tool calls with placeholders in ``function.arguments`` restored (new dicts)."""
    out = []
    for c in calls:
        fn = dict(c.get("function") or {})
        if isinstance(fn.get("arguments"), str):
            fn["arguments"] = vault.restore(fn["arguments"])
        out.append({**c, "function": fn})
    return out


def restore_piece(piece: bytes, vault: RedactionVault) -> bytes:
    """A released SSE chunk with the vault's placeholders restored. Released text is cut at
    whitespace, so a placeholder is never split across chunks."""
    if not piece.startswith(b"data: {") or b"<" not in piece:
        return piece
    chunk = orjson.loads(piece[6:])
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if isinstance(delta.get("content"), str):
            delta["content"] = vault.restore(delta["content"])
        if isinstance(delta.get("tool_calls"), list):
            delta["tool_calls"] = restore_calls(delta["tool_calls"], vault)
    return encode_sse(chunk)
