"""The operations audit stream (``gateway.store.keys.OPERATIONS_AUDIT``): who changed what the
gateway does, and under which config version.

One entry per event, fields (all strings): ``action``, ``by`` (the person, ``config`` or
``controller``), ``target`` (a flag or rollout id), ``reason``, ``config_version``
(``rollguard.config_version``), ``host``, ``pid``, ``at_ms`` (epoch ms), plus action-specific ones.
Actions:

- ``config_loaded``: a gateway process started serving a config (rollguard reads its config once
  per process and never reloads it; a new config is a restart, so each one is recorded here);
- ``flags_reload``: a process re-read its bootstrap flags file (SIGHUP or a store-wide
  ``rollguard flags reload``: ``trigger``; ``ok``: ``true``/``false``), and ``flags_reload_request``
  for the request itself;
- ``flag_kill`` / ``flag_revive`` / ``flag_percent``: the kill switch and flag overrides
  (``OverrideStore``: API, CLI or a rollout's actuator);
- ``rollout_rollback`` / ``rollout_pause``: a rollout stopped (a person or the controller); every
  rollout transition is also in ``rollguard:{rollout}:audit``.

Kept to ``MAXLEN ~ 100000`` entries. Writing never fails the operation it records: a store error is
logged (the operation itself already went through the store).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.store.keys import OPERATIONS_AUDIT

log = logging.getLogger("rollguard.ops_audit")

MAXLEN = 100_000
TIMEOUT_S = 2.0
"""Seconds one append may take (a hung store must not hold up a startup or a kill switch reply)."""


class OperationsAudit:
    """Appends events to the operations audit stream with one client and one config version."""

    def __init__(self, redis: aioredis.Redis, config_version: str, stream: str = OPERATIONS_AUDIT) -> None:
        self.redis = redis
        self.config_version = config_version
        self.stream = stream
        self._tasks: set[asyncio.Task[Any]] = set()

    async def record(
        self, action: str, *, by: str = "", target: str = "", reason: str = "", **extra: Any
    ) -> str | None:
        """Append one event; returns its stream id, None when the store refused it (logged)."""
        fields: dict[Any, Any] = {
            "action": action,
            "by": by,
            "target": target,
            "reason": reason,
            "config_version": self.config_version,
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "at_ms": str(int(time.time() * 1000)),
            **{k: str(v) for k, v in extra.items()},
        }
        try:
            async with asyncio.timeout(TIMEOUT_S):
                eid = await self.redis.xadd(self.stream, fields, maxlen=MAXLEN, approximate=True)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("operations audit: %s not recorded: %s", action, exc)
            return None
        return str(eid)

    def spawn(self, action: str, **kwargs: Any) -> None:
        """``record`` in a background task (from synchronous code on the event loop, e.g. a signal
        handler)."""
        task = asyncio.get_running_loop().create_task(self.record(action, **kwargs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class NoAudit(OperationsAudit):
    """Records nothing (parts built without a store-backed audit, e.g. in unit tests)."""

    def __init__(self) -> None:
        self.config_version = ""
        self._tasks = set()

    async def record(self, action: str, **kwargs: Any) -> str | None:
        return None


def audited_reload(reload: Callable[[], bool], ops: OperationsAudit, trigger: str) -> Callable[[], bool]:
    """``reload`` (``Flags.reload``) that also records ``flags_reload`` with ``trigger`` and its
    outcome. Call on the event loop's thread."""

    def run() -> bool:
        ok = reload()
        ops.spawn("flags_reload", by=trigger, trigger=trigger, ok=str(ok).lower())
        return ok

    return run


def audit_sighup(reload: Callable[[], bool], ops: OperationsAudit) -> bool:
    """Replace the running loop's SIGHUP handler (installed by ``Flags.install_sighup_handler``)
    with ``audited_reload``. Returns False where the loop cannot take signal handlers (not the main
    thread, no SIGHUP)."""
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is None or threading.current_thread() is not threading.main_thread():
        return False
    try:
        asyncio.get_running_loop().add_signal_handler(sighup, audited_reload(reload, ops, "SIGHUP"))
    except (RuntimeError, NotImplementedError, ValueError):
        return False
    return True
