"""Server-sent events in and out (``sse.py``, the codec) and the output guardrail for streamed
completions (``holdback.py``: the hold-back window; ``guard.py``: tool-call assembly,
``StreamGuard``, the drivers ``guard_batches`` / ``guard_stream``)."""

from gateway.streaming.guard import (
    HoldbackWindow,
    StreamGuard,
    TextCheck,
    ToolCallAssembler,
    ToolCheck,
    guard_batches,
    guard_stream,
    tool_call_deltas,
)
from gateway.streaming.sse import (
    DONE,
    SSEEvent,
    SSEParser,
    content_chunk,
    decode_chunk,
    delivered_choice,
    encode_sse,
    error_event,
    finish_chunk,
    usage_chunk,
)

__all__ = [
    "DONE",
    "HoldbackWindow",
    "SSEEvent",
    "SSEParser",
    "StreamGuard",
    "TextCheck",
    "ToolCallAssembler",
    "ToolCheck",
    "content_chunk",
    "decode_chunk",
    "delivered_choice",
    "encode_sse",
    "error_event",
    "finish_chunk",
    "guard_batches",
    "guard_stream",
    "tool_call_deltas",
    "usage_chunk",
]
