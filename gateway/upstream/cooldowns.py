"""LiteLLM's ``router_settings.allowed_fails`` / ``cooldown_time``: a deployment that fails more
than ``allowed_fails`` times within one minute is left out of picks for ``cooldown_time`` seconds
(LiteLLM router docs, "Cooldowns"), on top of the cooldowns an upstream asks for with
``Retry-After``. Counted are the failures that may fall back (5xx, timeouts, refused connections,
429, rejected credentials), not an upstream 400 (the request's fault), nor a failure that came
with its own wait (``Retry-After``, or a deployment at its ``rpm``/``tpm``: that wait is used).
As LiteLLM, an alias with a single deployment is never cooled down this way (there is no other
deployment to send it to).
Unset ``allowed_fails`` (the default): nothing is counted. Per process, in memory.
"""

from __future__ import annotations

import time
from collections import deque

WINDOW_S = 60.0
"""Seconds over which failures are counted (LiteLLM: per minute)."""


class FailureCooldown:
    """``failed(key) -> seconds`` to cool the deployment ``key`` down for (0.0: not yet)."""

    def __init__(self, allowed_fails: int | None, cooldown_time: float) -> None:
        self.enabled = allowed_fails is not None
        self._allowed = allowed_fails or 0
        self._cooldown = cooldown_time
        self._fails: dict[int, deque[float]] = {}

    def failed(self, key: int) -> float:
        """Record one failure of ``key``; ``cooldown_time`` when it is over ``allowed_fails`` in the
        last ``WINDOW_S`` seconds (the count starts again), else 0.0."""
        now = time.monotonic()
        recent = self._fails.setdefault(key, deque())
        recent.append(now)
        while recent and recent[0] <= now - WINDOW_S:
            recent.popleft()
        if len(recent) > self._allowed:
            recent.clear()
            return self._cooldown
        return 0.0
