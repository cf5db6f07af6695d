"""The one-off move of the detector keys to their hash tag (``gateway.store.keys.DETECTORS_TAG``).

Until 2026-12 the worker's keys had no hash tag (``rollguard:detectors:state``,
``rollguard:signals``, ...), so its batch transaction spanned six Redis Cluster slots. Every worker
runs ``migrate_detector_keys`` before it reads: each old key is renamed to its new name with
``RENAMENX`` (atomic; the value, TTL and a stream's consumer groups and pending lists move with
it) unless the new name already exists. An old key left behind (a new gateway created the new
anomalies stream before any worker ran) is logged with the command that moves it by hand. On a
Cluster the old keys sit in other slots than the new ones, so ``RENAMENX`` is refused
(``CROSSSLOT``): logged; the old layout never ran there (its transaction was refused the same
way), so there is nothing to move.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gateway.store.keys import LEGACY_DETECTOR_KEYS

log = logging.getLogger("rollguard.worker")


async def migrate_detector_keys(client: aioredis.Redis) -> list[str]:
    """Rename every old detector key that exists to its new name (``RENAMENX``); returns the old
    names moved. Raises ``RedisError`` subclasses other than a refused rename."""
    moved: list[str] = []
    for old, new in LEGACY_DETECTOR_KEYS.items():
        if not await client.exists(old):
            continue
        try:
            done = await client.renamenx(old, new)
        except ResponseError as exc:
            log.warning("detector keys: cannot rename %s to %s (%s); leaving it", old, new, exc)
            continue
        if done:
            moved.append(old)
        else:
            log.warning(
                "detector keys: both %s and %s exist; the old one is no longer read: move what it"
                " holds by hand (e.g. RENAME after checking %s is empty) or delete it",
                old,
                new,
                new,
            )
    if moved:
        log.info("detector keys: moved %s to the {detectors} hash tag", ", ".join(moved))
    return moved
