"""The store-backed flag override map: a kill switch and a rollout percentage per flag that reach
every worker process of every replica within a second, without a store round trip per request.

Shape (``rollguard:{flags}:overrides``, a hash: flag -> JSON)::

    {"killed": true}                       # the flag is off for everyone (kill switch)
    {"percent": 5.0}                       # variant flag: 5 % canary, 95 % control;
                                           # plain flag: on for 5 % of the subjects
    {"percent": 0.0, "by": "...", ...}     # a rolled-back canary

Writers (``OverrideStore``: the CLI, the operator API, the rollout controller) change the hash,
increment ``rollguard:{flags}:version`` and publish the new version on ``rollguard:flags:changed``
in one Lua script. Every process keeps the whole map in memory (``OverrideMap``); its
``OverrideListener`` reloads the map when a push arrives and, as a safety net for a lost push
(pub/sub is at-most-once), when the version it reads every ``check_s`` seconds differs.

The request path reads the map once (``OverrideMap.entries``, a dict) and, for a flag with an
override, ``decide`` buckets the subject deterministically: murmur3 of ``<flag>:<subject id>``
(Unleash's normalised-hash stickiness, ``unleash-client-node`` ``util.normalizedHash``) modulo
10,000, so a subject keeps its arm as the percentage grows. Requests with no subject id are spread
by a per-process rotation (never ``random()`` on the request path).

Errors: store calls raise ``rollguard.errors.StoreError`` subclasses (``gateway.store.errors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import mmh3
import orjson
import redis.asyncio as aioredis

from gateway.ops_audit import NoAudit, OperationsAudit
from gateway.store.errors import redis_errors
from gateway.store.keys import (
    FLAG_OVERRIDES,
    FLAG_OVERRIDES_CHANNEL,
    FLAG_OVERRIDES_VERSION,
    FLAGS_RELOAD_CHANNEL,
)
from gateway.store.streams import text
from rollguard.errors import StoreError

log = logging.getLogger("rollguard.flags.overrides")

CANARY = "canary"
CONTROL = "control"
_ROTATION = itertools.count()


@dataclass(frozen=True, slots=True)
class Override:
    """One flag's override. ``killed``: off for everyone; ``percent``: canary share (variant
    flags) or enabled share (plain flags), 0..100; ``by`` / ``at_ms`` / ``reason``: who wrote it,
    when (UTC epoch ms) and why."""

    killed: bool = False
    percent: float | None = None
    by: str = ""
    at_ms: int = 0
    reason: str = ""

    @classmethod
    def from_json(cls, raw: str | bytes) -> Override:
        d = orjson.loads(raw)
        pct = d.get("percent")
        return cls(
            killed=bool(d.get("killed", False)),
            percent=float(pct) if pct is not None else None,
            by=str(d.get("by", "")),
            at_ms=int(d.get("at_ms", 0)),
            reason=str(d.get("reason", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "killed": self.killed,
            "percent": self.percent,
            "by": self.by,
            "at_ms": self.at_ms,
            "reason": self.reason,
        }


def bucket(flag: str, subject: str | None) -> float:
    """The subject's position in ``[0, 100)`` for ``flag`` (two decimals): murmur3 x86 32-bit of
    ``<flag>:<subject>`` modulo 10,000 / 100. ``subject`` None: the next value of a per-process
    rotation (anonymous traffic spreads over the split)."""
    if subject is None:
        return (next(_ROTATION) * 37 % 10_000) / 100.0
    return (mmh3.hash(f"{flag}:{subject}", signed=False) % 10_000) / 100.0


def decide(ov: Override, flag: str, subject: str | None, *, variant_flag: bool) -> tuple[bool, str | None]:
    """``(enabled, variant)`` of ``flag`` for one request under override ``ov``. Killed: off, no
    variant. A variant flag with a percentage: on, ``canary`` for subjects below the percentage,
    else ``control``. A plain flag: on for subjects below the percentage."""
    if ov.killed:
        return False, None
    if ov.percent is None:
        raise ValueError("an override without killed or percent decides nothing")
    inside = bucket(flag, subject) < ov.percent
    if variant_flag:
        return True, CANARY if inside else CONTROL
    return inside, None


class OverrideMap:
    """The in-memory override map of one process. ``entries`` is replaced whole (never mutated),
    so the request path reads a consistent dict without a lock. ``on_change`` (no arguments) runs
    after every replacement that changes the entries (a flag result cache drops what it holds)."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.entries: Mapping[str, Override] = {}
        self.version = -1
        self.loaded_ms: int | None = None
        self._on_change = on_change

    def replace(self, entries: Mapping[str, Override], version: int) -> None:
        changed = dict(entries) != self.entries
        self.entries = dict(entries)
        self.version = version
        self.loaded_ms = int(time.time() * 1000)
        if changed and self._on_change is not None:
            self._on_change()

    def describe(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": self.version,
            "loaded_ms": self.loaded_ms,
            "overrides": {k: v.to_dict() for k, v in sorted(self.entries.items())},
        }


_PATCH = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local obj = {}
if cur then obj = cjson.decode(cur) end
local patch = cjson.decode(ARGV[2])
for k, v in pairs(patch) do
  if v == cjson.null then obj[k] = nil else obj[k] = v end
end
if obj['killed'] ~= true and (obj['percent'] == nil or obj['percent'] == cjson.null) then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(obj))
end
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], v)
return v
"""


class OverrideStore:
    """Reads and writes the override map in the store (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis, audit: OperationsAudit | None = None) -> None:
        self.redis = redis
        self._patch = redis.register_script(_PATCH)
        self.audit = audit or NoAudit()
        """Every change is also an event of the operations audit stream (``gateway.ops_audit``)."""

    async def patch(self, flag: str, fields: Mapping[str, Any], action: str = "flag_override") -> int:
        """Merge ``fields`` into ``flag``'s override (a None value removes the field; an override
        left with neither ``killed`` nor ``percent`` is deleted), bump the version and push it;
        then record ``action`` in the operations audit. Returns the new version. Raises
        ``StoreError``."""
        body = orjson.dumps({**fields, "at_ms": int(time.time() * 1000)}).decode()
        with redis_errors("cannot write the flag override"):
            v = await self._patch(
                keys=[FLAG_OVERRIDES, FLAG_OVERRIDES_VERSION], args=[flag, body, FLAG_OVERRIDES_CHANNEL]
            )
        extra = {"percent": fields["percent"]} if "percent" in fields else {}
        await self.audit.record(
            action,
            by=str(fields.get("by") or ""),
            target=flag,
            reason=str(fields.get("reason") or ""),
            version=int(v),
            **extra,
        )
        return int(v)

    async def kill(self, flag: str, by: str, reason: str = "") -> int:
        """Turn ``flag`` off for everyone (kill switch). Returns the new version."""
        fields = {"killed": True, "by": by, "reason": reason or "kill switch"}
        return await self.patch(flag, fields, "flag_kill")

    async def revive(self, flag: str, by: str, reason: str = "") -> int:
        """Undo ``kill``; a rollout percentage set on the flag stays. Returns the new version."""
        return await self.patch(
            flag, {"killed": None, "by": by, "reason": reason or "revived"}, "flag_revive"
        )

    async def set_percent(self, flag: str, percent: float | None, by: str, reason: str = "") -> int:
        """Set (or with None remove) the flag's rollout percentage. Returns the new version."""
        if percent is not None and not 0 <= percent <= 100:
            raise ValueError(f"percent must be in [0, 100], got {percent}")
        return await self.patch(flag, {"percent": percent, "by": by, "reason": reason}, "flag_percent")

    async def version(self) -> int:
        with redis_errors("cannot read the flag override version"):
            raw = await self.redis.get(FLAG_OVERRIDES_VERSION)
        return int(raw) if raw is not None else 0

    async def load(self) -> tuple[int, dict[str, Override]]:
        """``(version, flag -> Override)`` read atomically. Unparseable entries are skipped (and
        logged once per load)."""
        with redis_errors("cannot read the flag overrides"):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.get(FLAG_OVERRIDES_VERSION)
                pipe.hgetall(FLAG_OVERRIDES)
                raw_version, raw = await pipe.execute()
        out: dict[str, Override] = {}
        for k, v in raw.items():
            try:
                out[text(k)] = Override.from_json(v)
            except (orjson.JSONDecodeError, TypeError, ValueError):
                log.warning("flags: ignoring an unparseable override for %r", text(k))
        return (int(raw_version) if raw_version is not None else 0), out

    async def request_reload(self, by: str = "") -> int:
        """Ask every process to re-read its bootstrap flags file (the store-wide SIGHUP). Returns
        how many subscribers received it."""
        with redis_errors("cannot publish the reload request"):
            n = int(await self.redis.publish(FLAGS_RELOAD_CHANNEL, str(int(time.time() * 1000))))
        await self.audit.record("flags_reload_request", by=by, receivers=n)
        return n


class OverrideListener:
    """Keeps one process's ``OverrideMap`` current: a pub/sub subscription on the change and reload
    channels (push: a change lands in milliseconds) plus a version check every ``check_s`` seconds
    (a lost push or a reconnect costs at most ``check_s``). ``on_reload`` is called on a reload
    request (``Flags.reload``)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        overrides: OverrideMap,
        *,
        on_reload: Callable[[], object] | None = None,
        check_s: float = 2.0,
    ) -> None:
        self.store = OverrideStore(redis)
        self.redis = redis
        self.map = overrides
        self.on_reload = on_reload
        self.check_s = check_s
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0

    async def refresh(self) -> bool:
        """Load the map when the store's version differs from ours; True when it was replaced."""
        version, entries = await self.store.load()
        if version == self.map.version:
            return False
        self.map.replace(entries, version)
        self.reloads += 1
        return True

    async def start(self) -> None:
        """Load the map once (before the first request), then listen in a background task. With
        the store down the process starts degraded (issue 10): the map stays empty, so flags
        answer from Unleash or the bootstrap file, and the background task loads the map as soon
        as the store answers (logged once)."""
        try:
            await self.refresh()
        except StoreError as exc:
            log.warning("flags: the override map cannot be read (%s); starting without it", exc)
        self._task = asyncio.create_task(self._run(), name="rollguard-flag-overrides")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store went away: retry, the request path keeps the map
                failures += 1
                if failures == 1:
                    log.warning("flags: override listener lost the store (%s); retrying", type(exc).__name__)
                await asyncio.sleep(min(5.0, 0.2 * failures))

    async def _listen(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(FLAG_OVERRIDES_CHANNEL, FLAGS_RELOAD_CHANNEL)
            await self.refresh()  # changes made while we were not subscribed
            next_check = time.monotonic() + self.check_s
            while True:
                timeout = max(0.05, next_check - time.monotonic())
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
                if msg is not None and text(msg.get("channel", b"")) == FLAGS_RELOAD_CHANNEL:
                    if self.on_reload is not None:
                        self.on_reload()
                elif msg is not None:
                    await self.refresh()
                if time.monotonic() >= next_check:
                    await self.refresh()
                    next_check = time.monotonic() + self.check_s
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
