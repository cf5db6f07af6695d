"""The per-process runtime: everything a request handler needs, built in the app lifespan (after
any fork) and reached through ``runtime(request)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from gateway.auth import Authenticator
from gateway.flags import Flags
from gateway.ratelimit import RateLimits
from gateway.service import ChatService
from rollguard.settings import RollguardSettings


@dataclass
class Runtime:
    settings: RollguardSettings
    auth: Authenticator
    service: ChatService
    flags: Flags
    store: Any
    extras: dict[str, Any]
    limits: RateLimits = field(default_factory=RateLimits.disabled)

    async def store_ready(self) -> bool:
        """True when the Redis store answers PING."""
        if self.store is None:
            return False
        try:
            return bool(await self.store.ping())
        except Exception:
            return False


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt
