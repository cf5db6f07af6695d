"""Rollouts in the store: the state JSON per rollout, the judgments and audit streams, and the
controller lease. Every key is named in ``gateway.store.keys`` and shares the hash tag
``{rollout}``, so one Lua script may touch them together.

Writes are compare-and-set in Lua: ``save`` writes a state only when the stored revision is the
one the caller read (two approvals of one step: the second finds a newer revision, re-reads, and
gets 409 from the state machine), and, for a controller write, only while the caller's fencing
token is the current lease's (a controller that lost its lease while paused by GC or a network
partition cannot write). The state and its audit entry (who, when, why, evidence id) are written
in the same script.

The lease (``ControllerLease``): ``acquire_or_renew`` is one Lua script that sets the lease key
``"<holder> <fence>"`` with NX semantics and a TTL in ms (a new holder gets a new fence from an INCR
counter), or renews it (PEXPIRE) when the caller already holds it (compare-and-set on the
holder). ``release`` deletes it only if still held. Redis' own lease recipe ("Distributed locks
with Redis", the single-instance algorithm) plus Kleppmann's fencing tokens ("How to do
distributed locking", 2016).

Judgments (one per controller look, every ``interval_s`` while a step runs: 17,280 a day at 5 s)
are bounded: ``XADD ... MAXLEN ~ JUDGMENTS_KEPT`` keeps about the newest ``JUDGMENTS_KEPT`` of a
rollout (Redis trims whole stream nodes, so a few more may stay). A judgment whose action is not
``wait`` (promote, pause, rollback: the evidence a transition, its audit entry, review item and
webhook name) is also written, in the same script and under the same id, to the rollout's evidence
stream, which is never trimmed (one entry per transition). ``judgments`` reads the newest ones plus
the deciding ones before them, so the console still plots the last judgment of every earlier step
and every evidence id stays readable, and each record read still reproduces offline
(``judge_step(plan, step_data_of(record))``).

Errors: ``StoreError`` subclasses (``gateway.store.errors``); ``Conflict`` when a revision moved;
``NotFound`` for an unknown rollout id.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis

from gateway.rollout.state import RolloutState
from gateway.store.errors import redis_errors
from gateway.store.keys import (
    ROLLOUT_AUDIT,
    ROLLOUT_FENCE,
    ROLLOUT_INDEX,
    ROLLOUT_LEASE,
    rollout_evidence,
    rollout_judgments,
    rollout_state,
)
from gateway.store.streams import text
from rollguard.errors import Conflict, NotFound

_SAVE = """
local cur = redis.call('GET', KEYS[1])
local rev = -1
if cur then rev = tonumber(cjson.decode(cur)['revision']) end
if tonumber(ARGV[1]) ~= rev then return {0, tostring(rev)} end
if ARGV[3] ~= '0' then
  local lease = redis.call('GET', KEYS[3])
  if not lease then return {-1, 'no lease'} end
  local sp = string.find(lease, ' ', 1, true)
  if string.sub(lease, sp + 1) ~= ARGV[3] then return {-1, 'fenced'} end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[4])
local id = redis.call('XADD', KEYS[2], '*', 'rollout', ARGV[4], 'data', ARGV[5])
return {1, id}
"""

_APPEND = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'rollout', ARGV[2], 'data', ARGV[3])
if ARGV[4] == '1' then
  redis.call('XADD', KEYS[2], id, 'rollout', ARGV[2], 'data', ARGV[3])
end
return id
"""

JUDGMENTS_KEPT = 10_000
"""Judgments kept per rollout (about: ``MAXLEN ~``): 13.9 hours of looks at the default 5 s, five
times the newest 2,000 the console's rollout page reads (``gateway.rollout.views``)."""

_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local sp = string.find(cur, ' ', 1, true)
  if string.sub(cur, 1, sp - 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(cur, sp + 1))
  end
  return 0
end
local f = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. f, 'NX', 'PX', ARGV[2])
return f
"""

_RELEASE = """
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ' ' then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Fenced(Conflict):
    """A controller write refused because its lease (fencing token) is no longer current."""


class RolloutRepo:
    """Rollout states, judgments and audit entries in the store."""

    def __init__(self, redis: aioredis.Redis, judgments_kept: int = JUDGMENTS_KEPT) -> None:
        self.redis = redis
        self.judgments_kept = judgments_kept
        self._save = redis.register_script(_SAVE)
        self._append = redis.register_script(_APPEND)

    async def ids(self) -> list[str]:
        with redis_errors("cannot list the rollouts"):
            raw = await self.redis.smembers(ROLLOUT_INDEX)
        return sorted(text(r) for r in raw)

    async def get(self, rollout_id: str) -> RolloutState:
        """Raises ``NotFound`` for an unknown id."""
        with redis_errors("cannot read the rollout"):
            raw = await self.redis.get(rollout_state(rollout_id))
        if raw is None:
            raise NotFound(f"no rollout {rollout_id!r}", param="id", code="rollout_not_found")
        return RolloutState.from_json(raw)

    async def all(self) -> list[RolloutState]:
        out = []
        for rid in await self.ids():
            try:
                out.append(await self.get(rid))
            except NotFound:
                continue
        return out

    async def save(
        self,
        new: RolloutState,
        *,
        expected_revision: int,
        who: str,
        event: str,
        why: str = "",
        evidence_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Write ``new`` if the stored revision is ``expected_revision`` (-1: the rollout must not
        exist yet) and, when ``new.fence`` is not 0, the controller lease's fence is ``new.fence``;
        append the audit entry in the same script. Returns the audit entry id. Raises ``Conflict``
        (revision moved, or the id exists) or ``Fenced`` (lease lost)."""
        audit = {
            "rollout": new.id,
            "event": event,
            "who": who,
            "at_ms": new.updated_ms or int(time.time() * 1000),
            "why": why,
            "evidence_id": evidence_id,
            "from_revision": expected_revision,
            "status": new.status.value,
            "step": new.step,
            "percent": new.percent,
            "fence": new.fence,
            **(dict(extra) if extra else {}),
        }
        with redis_errors("cannot write the rollout"):
            ok, detail = await self._save(
                keys=[rollout_state(new.id), ROLLOUT_AUDIT, ROLLOUT_LEASE, ROLLOUT_INDEX],
                args=[expected_revision, new.to_json(), str(new.fence), new.id, orjson.dumps(audit).decode()],
            )
        if int(ok) == 0:
            raise Conflict(f"rollout {new.id} changed meanwhile (revision {text(detail)})")
        if int(ok) < 0:
            raise Fenced(f"controller lease lost ({text(detail)}); rollout {new.id} not written")
        return text(detail)

    async def append_judgment(self, rollout_id: str, record: Mapping[str, Any]) -> str:
        """Append one judgment (a ``Judgment.to_dict()`` plus the controller's fields) to the
        rollout's judgments stream, trimmed to about ``judgments_kept``; a deciding one (``action``
        other than ``wait``) to its evidence stream as well, same id. Returns the entry id (the
        evidence id transitions and review items name)."""
        keep = "1" if record.get("action", "wait") != "wait" else "0"
        with redis_errors("cannot append the judgment"):
            rid = await self._append(
                keys=[rollout_judgments(rollout_id), rollout_evidence(rollout_id)],
                args=[self.judgments_kept, rollout_id, orjson.dumps(record).decode(), keep],
            )
        return text(rid)

    async def judgments(self, rollout_id: str, count: int = 100) -> list[dict[str, Any]]:
        """The rollout's newest ``count`` judgments and, before them, the deciding judgments of
        its evidence stream (the transitions of earlier steps), newest first, each once."""
        newest = await self._tail(rollout_judgments(rollout_id), None, count)
        oldest = _stream_id(newest[-1]["id"]) if newest else None
        with redis_errors("cannot read the rollout stream"):
            rows = await self.redis.xrevrange(rollout_evidence(rollout_id))
        earlier = [
            _entry(eid, f)[1] for eid, f in rows or [] if oldest is None or _stream_id(text(eid)) < oldest
        ]
        return newest + earlier

    async def audit(self, rollout_id: str | None = None, count: int = 100) -> list[dict[str, Any]]:
        """The newest ``count`` audit entries (of one rollout when ``rollout_id``), newest first."""
        return await self._tail(ROLLOUT_AUDIT, rollout_id, count)

    async def _tail(self, stream: str, rollout_id: str | None, count: int) -> list[dict[str, Any]]:
        with redis_errors("cannot read the rollout stream"):
            rows = await self.redis.xrevrange(stream, count=count * (1 if rollout_id is None else 20))
        out = []
        for entry_id, fields in rows or []:
            of, entry = _entry(entry_id, fields)
            if rollout_id is not None and of != rollout_id:
                continue
            out.append(entry)
            if len(out) >= count:
                break
        return out


def _entry(entry_id: Any, fields: Mapping[Any, Any] | None) -> tuple[str | None, dict[str, Any]]:
    """A stored judgment or audit entry: the rollout it names and its ``data`` JSON with the
    stream entry ``id``."""
    f = {text(k): text(v) for k, v in (fields or {}).items()}
    return f.get("rollout"), {"id": text(entry_id), **orjson.loads(f.get("data", "{}"))}


def _stream_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``"<ms>-<seq>"``) as a comparable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class ControllerLease:
    """The one-controller lease (see the module docstring). ``holder`` names this process;
    ``ttl_ms`` is how long a silent holder keeps it."""

    def __init__(self, redis: aioredis.Redis, holder: str, ttl_ms: int = 15_000) -> None:
        if " " in holder:
            raise ValueError("a lease holder name has no spaces")
        self.redis = redis
        self.holder = holder
        self.ttl_ms = ttl_ms
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self.fence = 0

    async def acquire_or_renew(self) -> int:
        """This holder's fencing token (> 0) when it holds the lease after the call, else 0."""
        with redis_errors("cannot take the controller lease"):
            fence = int(
                await self._acquire(keys=[ROLLOUT_LEASE, ROLLOUT_FENCE], args=[self.holder, self.ttl_ms])
            )
        self.fence = fence
        return fence

    async def release(self) -> bool:
        with redis_errors("cannot release the controller lease"):
            done = int(await self._release(keys=[ROLLOUT_LEASE], args=[self.holder]))
        self.fence = 0
        return bool(done)

    async def holder_now(self) -> str | None:
        """``"<holder> <fence>"`` of the current lease, or None."""
        with redis_errors("cannot read the controller lease"):
            raw = await self.redis.get(ROLLOUT_LEASE)
        return text(raw) if raw is not None else None
