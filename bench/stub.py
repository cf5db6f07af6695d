"""The benchmark's upstream: the demo upstream stub (``gateway.demo.upstream``: a fixed 512-character
reply for model ``bench``, 16 content chunks when streamed) with an optional fixed delay before each
chat completion starts (the model's time to first token), on uvloop.

Run: ``python bench/stub.py --port N [--delay-ms 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gateway.demo.upstream import build_app  # noqa: E402

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def delayed_app(delay_ms: float) -> web.Application:
    """The stub app; with ``delay_ms`` > 0 every ``POST .../chat/completions`` waits that long
    (``asyncio.sleep``, no CPU) before the stub handles it."""
    app: web.Application = build_app()
    if delay_ms > 0:

        @web.middleware
        async def delay(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.method == "POST" and request.path.endswith("/chat/completions"):
                await asyncio.sleep(delay_ms / 1000)
            return await handler(request)

        app.middlewares.append(delay)
    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--delay-ms", type=float, default=0.0)
    a = p.parse_args(argv)
    loop: asyncio.AbstractEventLoop | None = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        pass
    web.run_app(
        delayed_app(a.delay_ms),
        host=a.host,
        port=a.port,
        access_log=None,
        print=None,
        backlog=1024,
        loop=loop,
    )


if __name__ == "__main__":
    main()
