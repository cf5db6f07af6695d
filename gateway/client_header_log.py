"""The warnings the OpenTelemetry API logs about a client's trace headers (an oversized or
malformed ``traceparent``, a bad ``tracestate``), tamed: such a warning is client input arriving
on every request, so a client could otherwise fill the log (one line per request) and write its
own header values into it.

``OncePerInterval`` lets one line per message through every ``interval_s`` seconds (60 by
default); the next line after a quiet period says how many like it were held back
(``... (41 more like it since the last one, not logged)``), and the header values (the string
arguments of the message) are replaced by ``<client value>``. ``install`` puts it on the
OpenTelemetry loggers that log client headers (``CLIENT_HEADER_LOGGERS``); idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

CLIENT_HEADER_LOGGERS = ("opentelemetry.trace.propagation.tracecontext", "opentelemetry.trace.span")
INTERVAL_S = 60.0
PLACEHOLDER = "<client value>"


class OncePerInterval(logging.Filter):
    """A logging filter passing one record per message template every ``interval_s`` seconds
    (``clock``: seconds, monotonic), counting the others; thread-safe."""

    def __init__(self, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(PLACEHOLDER if isinstance(a, str) else a for a in record.args)
        if held:
            record.msg = f"{record.msg} ({held} more like it since the last one, not logged)"
        return True


_installed = False


def install() -> None:
    """Add one ``OncePerInterval`` to every logger of ``CLIENT_HEADER_LOGGERS`` (once per process)."""
    global _installed
    if _installed:
        return
    limiter = OncePerInterval()
    for name in CLIENT_HEADER_LOGGERS:
        logging.getLogger(name).addFilter(limiter)
    _installed = True
