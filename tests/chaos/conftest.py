"""The chaos trial's gateway: the real app under uvicorn on a socket, the real store, the demo
upstream on a socket (``tests/integration/conftest.py``), two tenants with their own app keys and
the review console with the test reviewers (``tests/review/appkit.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from gateway.app import create_app
from rollguard.settings import RollguardSettings
from tests.integration.conftest import METRICS, SPANS, Stub, base_config, stub
from tests.review.appkit import TOKENS, review_config
from tests.servers import serve_app

__all__ = ["METRICS", "SPANS", "ChaosGateway", "stub"]

APP_KEYS = {"acme": "sk-chaos-acme-0001", "globex": "sk-chaos-globex-0002"}


@dataclass
class ChaosGateway:
    url: str
    redis_url: str
    stub: Stub

    def app_headers(self, tenant: str = "acme") -> dict[str, str]:
        return {"Authorization": f"Bearer {APP_KEYS[tenant]}"}

    @staticmethod
    def reviewer_headers(name: str = "lea") -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[name]}"}


def chaos_settings(stub: Stub, redis_url: str, **extra: Any) -> RollguardSettings:
    cfg = base_config(
        stub,
        redis_url,
        gateway={"api_keys": [{"key": k, "tenant": t} for t, k in APP_KEYS.items()]},
        review=review_config(),
        **extra,
    )
    return RollguardSettings(**cfg)


@pytest.fixture(scope="module")
def chaos_gateway(stub: Stub, redis_server_url: str) -> Iterator[ChaosGateway]:
    """One gateway for the module, on a flushed database."""
    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    client.close()
    stub.reset()
    with serve_app(create_app(chaos_settings(stub, redis_server_url))) as srv:
        yield ChaosGateway(srv.url, redis_server_url, stub)
