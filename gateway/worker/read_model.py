"""The detectors' read model: what ``GET /v1/detectors`` shows of the state the workers keep in
``rollguard:{detectors}:state`` (``gateway.store.keys.STATE_KEY``)."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from detectors.engine import EngineConfig, WindowEngine
from gateway.store.errors import redis_errors
from gateway.store.keys import STATE_KEY


async def read_detector_summary(client: aioredis.Redis, config: EngineConfig | None = None) -> dict[str, Any]:
    """The current detector state per detector and group, for ``GET /v1/detectors`` (``{}`` before
    the first interaction). Raises ``StoreError``."""
    with redis_errors("cannot read the detector state"):
        raw = await client.get(STATE_KEY)
    if not raw:
        return {}
    return WindowEngine.from_dict(orjson.loads(raw), config).summary()
