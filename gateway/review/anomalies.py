"""Anomaly bundles in: the review service's consumer of ``rollguard:{detectors}:anomalies`` (consumer group
``review-router``) and the exemplar records a bundle names.

Consumers: each service process reads under its own name (``gateway.store.keys.consumer_name``).
A bundle read but not acknowledged by a process that died sits in that consumer's pending list;
every ``read`` first takes over (XAUTOCLAIM) entries idle for ``claim_idle_ms``, so a restarted
or other replica handles it -- at least once: routing is deduplicated per (anomaly, queue). Once an
hour, consumers with nothing pending that have not read for an hour are deleted from the group.

Exemplars: bundles written by the detector worker carry their exemplar records
(``exemplar_records``, see ``gateway.worker.exemplars``). Only an older bundle without that key
(ids alone, in ``exemplars`` / ``exemplar_ids``) is resolved by searching the newest
``exemplar_scan`` entries of the interactions stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis

from gateway.store.errors import redis_errors
from gateway.store.keys import ANOMALIES_STREAM, ANOMALY_GROUP, INTERACTIONS_STREAM, consumer_name
from gateway.store.streams import ensure_group, forget_idle_consumers, text

log = logging.getLogger("rollguard.review")

FORGET_IDLE_MS = 3_600_000
"""A consumer with nothing pending that has not read for an hour is a process gone: forgotten."""

Handler = Callable[[dict[str, Any]], Awaitable[object]]


class AnomalyConsumer:
    """One process's member of the ``review-router`` group on the anomalies stream."""

    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str = ANOMALIES_STREAM,
        *,
        consumer: str | None = None,
        claim_idle_ms: int = 60_000,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.consumer = consumer or consumer_name("review")
        self.claim_idle_ms = claim_idle_ms
        self._forgot_ms = 0.0

    async def read(self, handle: Handler, *, consumer: str | None = None, block_ms: int = 1000) -> int:
        """Take over idle pending bundles, then read new ones (blocking up to ``block_ms``); hand
        each parsed bundle to ``handle`` and acknowledge it after. Returns the number handled. A
        bundle that cannot be parsed is logged (by entry id) and acknowledged. Raises
        ``StoreError``."""
        name = consumer or self.consumer
        await ensure_group(self.redis, self.stream, ANOMALY_GROUP)
        await self._forget_dead()
        with redis_errors("cannot read the anomalies stream"):
            claimed: Any = await self.redis.xautoclaim(
                self.stream, ANOMALY_GROUP, name, self.claim_idle_ms, "0-0"
            )
            res: Any = await self.redis.xreadgroup(
                ANOMALY_GROUP, name, {self.stream: ">"}, count=100, block=block_ms
            )
        entries = [(eid, f) for eid, f in (claimed[1] or []) if f is not None]
        for _stream, new in res or []:
            entries.extend(new)
        handled = 0
        for entry_id, fields in entries:
            bundle = parse_bundle(fields)
            if bundle is None:
                log.warning("anomaly %s: unreadable bundle, skipped", text(entry_id))
            else:
                await handle(bundle)
                handled += 1
            with redis_errors("cannot acknowledge an anomaly"):
                await self.redis.xack(self.stream, ANOMALY_GROUP, entry_id)
        return handled

    async def _forget_dead(self) -> None:
        """At most once per ``FORGET_IDLE_MS``: delete the group's consumers with nothing pending
        that have not read for that long (names of processes gone)."""
        now = time.monotonic() * 1000
        if now - self._forgot_ms < FORGET_IDLE_MS:
            return
        self._forgot_ms = now
        gone = await forget_idle_consumers(self.redis, self.stream, ANOMALY_GROUP, FORGET_IDLE_MS)
        if gone:
            log.info("review: forgot %d idle anomaly consumer(s)", len(gone))


def parse_bundle(fields: Mapping[Any, Any]) -> dict[str, Any] | None:
    """An anomaly bundle from a stream entry: a JSON object in one of the fields ``bundle``,
    ``data``, ``json``, ``anomaly``, else the flat fields (JSON-decoded where they parse)."""
    flat = {text(k): text(v) for k, v in fields.items()}
    for name in ("bundle", "data", "json", "anomaly"):
        if name in flat:
            try:
                obj = orjson.loads(flat[name])
            except orjson.JSONDecodeError:
                return None
            return obj if isinstance(obj, dict) else None
    out: dict[str, Any] = {}
    for k, v in flat.items():
        try:
            out[k] = orjson.loads(v)
        except orjson.JSONDecodeError:
            out[k] = v
    if "detector" in out and not isinstance(out["detector"], str):
        out["detector"] = str(out["detector"])
    return out or None


async def resolve_exemplars(
    redis: aioredis.Redis,
    bundle: Mapping[str, Any],
    *,
    interactions_stream: str = INTERACTIONS_STREAM,
    scan: int = 5000,
) -> list[dict[str, Any]]:
    """The exemplar records of ``bundle``: its ``exemplar_records`` when present (no Redis call);
    else records given inline in ``exemplars``; else (older bundles) the ids looked up in the
    newest ``scan`` entries of ``interactions_stream``. Raises ``StoreError``."""
    carried = bundle.get("exemplar_records")
    if isinstance(carried, list):
        return [dict(x) for x in carried if isinstance(x, Mapping)]
    inline = [x for x in bundle.get("exemplars") or [] if isinstance(x, Mapping) and x.get("messages")]
    if inline:
        return [dict(x) for x in inline]
    named = bundle.get("exemplars") or bundle.get("exemplar_ids") or []
    wanted = {str(x) for x in named if isinstance(x, str)}
    if not wanted:
        return []
    with redis_errors("cannot read the interactions stream"):
        rows = await redis.xrevrange(interactions_stream, count=scan)
    found: dict[str, dict[str, Any]] = {}
    for entry_id, fields in rows or []:
        rec = _record_of(fields or {})
        if rec is None:
            continue
        rid = str(rec.get("id"))
        if rid in wanted or text(entry_id) in wanted:
            found[rid] = rec
    return list(found.values())


def _record_of(fields: Mapping[Any, Any]) -> dict[str, Any] | None:
    for v in fields.values():
        try:
            obj = orjson.loads(v)
        except (orjson.JSONDecodeError, TypeError):
            continue
        if isinstance(obj, dict) and obj.get("id") and "messages" in obj:
            return obj
    return None
