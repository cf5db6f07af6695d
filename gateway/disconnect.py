"""Notice a non-streamed client that leaves while its chat completion is being served (issue 10:
the upstream was called, and retried, for nobody). Streams have their own watcher
(``gateway.sse_response.RelayResponse``).

``unless_disconnected(work, receive)`` runs ``work`` (the service call) as a task beside a
listener on the ASGI ``receive`` channel. Once the request body is read, the next ``receive()``
returns only when the client disconnects (``http.disconnect``, ASGI HTTP spec); then the work is
cancelled (the upstream call with it: ``asyncio`` cancellation, no retry) and None is returned.
The service records such an interaction with status 499 (``gateway.service``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.types import Receive

__all__ = ["unless_disconnected"]

T = TypeVar("T")


async def _disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(work: Coroutine[Any, Any, T], receive: Receive) -> T | None:
    """``await work``, or None when the client disconnected first (``work`` is then cancelled
    and awaited, so its cleanup, the 499 record included, has run). Exceptions of ``work``
    propagate; a cancellation of the caller cancels both tasks."""
    task = asyncio.ensure_future(work)
    listener = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait({task, listener}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        listener.cancel()
        raise
    if task.done():
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None
