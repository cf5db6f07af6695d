"""The streaming response of a guarded chat completion: stops the relay the moment the client goes.

Starlette's ``StreamingResponse`` under uvicorn (ASGI spec 2.3) cancels the body iterator through
an anyio cancel scope when the client disconnects. That cancellation is level-triggered: every
``await`` in the relay's cleanup is cancelled again, so the upstream connection is not closed
cleanly and the audit record may never be written. Before the disconnect is noticed the relay also
keeps reading the upstream. ``RelayResponse`` instead runs the sending and a disconnect listener as
two plain asyncio tasks; on ``http.disconnect`` (or an ``OSError`` from ``send``: ASGI 2.4 servers
report a gone client that way) it cancels the sending task once and closes the body iterator, so
the relay's ``finally`` runs at once, closes the upstream and records what was delivered.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["RelayResponse"]


class RelayResponse(StreamingResponse):
    """A ``StreamingResponse`` whose ``body_iterator`` (an async generator) is closed as soon as
    the client disconnects. The generator sees ``asyncio.CancelledError`` at the ``await`` it is
    in (upstream read, policy check) or ``GeneratorExit`` at its ``yield``, once; its cleanup may
    await freely. HTTP only (no websocket denial responses)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sending = asyncio.ensure_future(self.stream_response(send))
        listening = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait({sending, listening}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            sending.cancel()
            listening.cancel()
            raise
        if not sending.done():
            sending.cancel()  # the client left: stop mid-relay
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        try:
            await sending
        except OSError:
            pass  # send() found the client gone (ASGI 2.4 servers)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are cancelled ourselves (shutdown), not only the sending task
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()  # a no-op when the generator already finished
        if self.background is not None:
            await self.background()
