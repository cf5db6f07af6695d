"""Refuse to read a store that is not the one the operator meant: the commands that read what a
gateway wrote (``rollguard review export``, ``rollguard rollout ...``, ``rollguard flags ...``) would
otherwise start a new, empty embedded store wherever they run (``store.data_dir`` is relative to the
current directory) or read a Redis database holding no rollguard data, and report nothing (0 rows)
as if that were the answer.

- ``check_embedded_dir``: with no ``store.redis_url``, the data dir must already hold an embedded
  store (``<data_dir>/valkey/``, created by the first ``rollguard serve``); raises ``ConfigError``
  naming the absolute data dir, the current directory and how to point at the right one;
- ``require_rollguard_data``: the store must hold at least one ``rollguard:*`` key (a gateway
  writes one at start: ``gateway.ops_audit`` ``config_loaded``); raises ``ConfigError``.
"""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from gateway.store.embedded import EmbeddedValkey
from gateway.store.errors import redact_url, redis_errors
from rollguard.errors import ConfigError
from rollguard.settings import StoreSettings

HOW = (
    "run the command in the directory where `rollguard serve` runs, pass the gateway's config "
    "with -c (its store.data_dir or store.redis_url), or set ROLLGUARD_REDIS_URL"
)


def where(settings: StoreSettings) -> str:
    """The store ``settings`` name, for messages: the embedded store's absolute data dir, or the
    Redis URL without credentials."""
    if settings.redis_url is None:
        return f"the embedded store in {Path(settings.data_dir).resolve()}"
    return redact_url(settings.redis_url)


def check_embedded_dir(settings: StoreSettings) -> None:
    """Raise ``ConfigError`` (field ``store.data_dir``) when the embedded store would be new."""
    if settings.redis_url is not None:
        return
    embedded = EmbeddedValkey(settings.data_dir)
    if not embedded.server_dir.is_dir():
        raise ConfigError(
            f"no rollguard store in {embedded.data_dir} (store.data_dir {str(settings.data_dir)!r} is "
            f"relative to the current directory {Path.cwd()}): {HOW}",
            field="store.data_dir",
        )


async def require_rollguard_data(client: aioredis.Redis, settings: StoreSettings) -> None:
    """Raise ``ConfigError`` when the store holds no ``rollguard:*`` key (empty, or another
    application's database). ``StoreError`` when Redis fails."""
    with redis_errors(f"cannot read {where(settings)}"):
        async for _ in client.scan_iter(match="rollguard:*", count=1000):
            return
    field = "store.data_dir" if settings.redis_url is None else "store.redis_url"
    raise ConfigError(
        f"{where(settings)} holds no rollguard data (empty or another application's): {HOW}", field=field
    )
