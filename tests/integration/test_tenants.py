"""Per-tenant settings (issue 12): every ``TenantSettings`` field has an effect on a real gateway
or store, and a setting nothing would read is refused at load.

``test_every_tenant_setting_has_an_effect`` walks ``TenantSettings.model_fields``: a new field
without an effect check here fails it."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from gateway.store import Store
from gateway.store.tenant_retention import TenantRetention
from rollguard.errors import ConfigError
from rollguard.settings import StoreSettings, TenantSettings, load_settings
from tests.integration.conftest import GatewayFactory, Stub

pytestmark = pytest.mark.integration

KEYS = [{"key": "sk-acme", "tenant": "acme"}, {"key": "sk-beta", "tenant": "beta"}]
LIMITS_ONLY = [{"id": "limits", "type": "limits"}]


def _chat(url: str, key: str, n_messages: int = 1, text: str = "hi", **extra: Any) -> httpx.Response:
    messages = [{"role": "user", "content": text} for _ in range(n_messages)]
    body = {"model": "echo", "messages": messages, **extra}
    return httpx.post(
        f"{url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def _records(redis_url: str) -> list[dict[str, Any]]:
    r = redis.Redis.from_url(redis_url)
    try:
        return [orjson.loads(f[b"record"]) for _, f in r.xrange("rollguard:interactions")]
    finally:
        r.close()


def _wait_records(redis_url: str, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        recs = _records(redis_url)
        if len(recs) >= n or time.monotonic() > deadline:
            return recs
        time.sleep(0.05)


def _blocked_for_acme_only(
    gateway: GatewayFactory, tenant_cfg: dict[str, Any], over: Callable[[str, str], httpx.Response]
) -> None:
    """``over`` (url, key) is a request over acme's cap and within the policy's defaults: blocked
    for acme (400 content_filter by ``limits``), served for beta."""
    with gateway(gateway={"api_keys": KEYS}, policies=LIMITS_ONLY, tenants={"acme": tenant_cfg}) as url:
        blocked = over(url, "sk-acme")
        assert blocked.status_code == 400, blocked.text
        assert blocked.json()["error"]["code"] == "content_filter"
        assert blocked.headers["x-rollguard-policy"] == "limits"
        served = over(url, "sk-beta")
        assert served.status_code == 200, served.text
        assert _chat(url, "sk-acme").status_code == 200  # within the cap


def effect_max_messages(gateway: GatewayFactory, redis_url: str) -> None:
    _blocked_for_acme_only(gateway, {"max_messages": 1}, lambda u, k: _chat(u, k, n_messages=3))


def effect_max_chars(gateway: GatewayFactory, redis_url: str) -> None:
    _blocked_for_acme_only(gateway, {"max_chars": 10}, lambda u, k: _chat(u, k, text="x" * 11))


def effect_max_tokens(gateway: GatewayFactory, redis_url: str) -> None:
    _blocked_for_acme_only(gateway, {"max_tokens": 16}, lambda u, k: _chat(u, k, max_tokens=17))


def effect_raw_content_opt_in(gateway: GatewayFactory, redis_url: str) -> None:
    mail = "jane.doe@example.com"
    with gateway(
        gateway={"api_keys": KEYS}, policies=LIMITS_ONLY, tenants={"acme": {"raw_content_opt_in": True}}
    ) as url:
        assert _chat(url, "sk-acme", text=f"mail {mail}").status_code == 200
        assert _chat(url, "sk-beta", text=f"mail {mail}").status_code == 200
    recs = {r["tenant"]: r for r in _wait_records(redis_url, 2)}
    assert mail in recs["acme"]["messages"][0]["content"]  # consented: stored raw
    assert mail not in orjson.dumps(recs["beta"]).decode()  # not consented: redacted
    assert "<EMAIL_ADDRESS_" in recs["beta"]["messages"][0]["content"]


def effect_retention_ms(gateway: GatewayFactory, redis_url: str) -> None:
    with tempfile.TemporaryDirectory(prefix="rg-tenant-retention-") as tmp:
        asyncio.run(_retention(redis_url, Path(tmp)))


async def _retention(redis_url: str, tmp: Path) -> None:
    tenants = {"acme": TenantSettings(retention_ms=60_000)}
    store = Store(
        StoreSettings(redis_url=redis_url, data_dir=tmp),
        retention_check_s=0,
        tenant_retention=TenantRetention.from_settings(tenants),
    )
    await store.start()
    try:
        for i, tenant in enumerate(["acme", "beta", "acme", "beta"]):
            store.append_interaction({"id": f"i{i}", "tenant": tenant})
        await store.flush()
        now = int(time.time() * 1000)
        assert await store.purge_tenants(now_ms=now) == 0  # not expired yet
        # A consumer group from "$": the entries so far count as acknowledged, later ones do not.
        await store.ensure_group(store.stream, "detectors", "$")
        store.append_interaction({"id": "late-acme", "tenant": "acme"})  # undelivered: kept
        await store.flush()
        removed = await store.purge_tenants(now_ms=now + 120_000)
        left = [f["id"] for _, f in await store.redis.xrange(store.stream)]
        assert removed == 2
        assert left == ["i1", "i3", "late-acme"]
    finally:
        await store.aclose()


def test_default_retention_applies_to_the_tenants_not_listed(redis_url: str) -> None:
    async def go(tmp: Path) -> None:
        tenants = {
            "acme": TenantSettings(retention_ms=300_000),
            "default": TenantSettings(retention_ms=60_000),
        }
        store = Store(
            StoreSettings(redis_url=redis_url, data_dir=tmp),
            retention_check_s=0,
            tenant_retention=TenantRetention.from_settings(tenants),
        )
        await store.start()
        try:
            for tenant in ("acme", "beta", "default"):
                store.append_interaction({"id": tenant, "tenant": tenant})
            await store.flush()
            now = int(time.time() * 1000)
            assert await store.purge_tenants(now_ms=now + 120_000) == 2  # beta (fallback) and default
            assert [f["id"] for _, f in await store.redis.xrange(store.stream)] == ["acme"]
            assert await store.purge_tenants(now_ms=now + 400_000) == 1
        finally:
            await store.aclose()

    with tempfile.TemporaryDirectory(prefix="rg-tenant-retention-") as tmp:
        asyncio.run(go(Path(tmp)))


EFFECTS: dict[str, Callable[[GatewayFactory, str], None]] = {
    "max_messages": effect_max_messages,
    "max_chars": effect_max_chars,
    "max_tokens": effect_max_tokens,
    "retention_ms": effect_retention_ms,
    "raw_content_opt_in": effect_raw_content_opt_in,
}


def test_every_tenant_setting_has_an_effect_check() -> None:
    assert set(EFFECTS) == set(TenantSettings.model_fields)


@pytest.mark.parametrize("field", sorted(TenantSettings.model_fields))
def test_every_tenant_setting_has_an_effect(gateway: GatewayFactory, redis_url: str, field: str) -> None:
    EFFECTS[field](gateway, redis_url)


def test_tenant_caps_override_the_policy_params_and_default_is_the_fallback(
    gateway: GatewayFactory,
) -> None:
    policies = [{"id": "limits", "type": "limits", "params": {"tenants": {"acme": {"max_messages": 1}}}}]
    tenants = {"acme": {"max_messages": 2}, "default": {"max_messages": 3}}
    with gateway(gateway={"api_keys": KEYS}, policies=policies, tenants=tenants) as url:
        assert _chat(url, "sk-acme", n_messages=2).status_code == 200  # tenants.acme over params
        assert _chat(url, "sk-acme", n_messages=3).status_code == 400
        assert _chat(url, "sk-beta", n_messages=3).status_code == 200  # tenants.default for beta
        assert _chat(url, "sk-beta", n_messages=4).status_code == 400


def _load(tmp_path: Path, text: str) -> None:
    p = tmp_path / "rollguard.yaml"
    p.write_text(text)
    load_settings(p)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "policies: [{id: pii, type: pii}]\ntenants: {acme: {max_messages: 1}}\n",
            "tenants.acme.max_messages: no 'limits' policy is configured",
        ),
        (
            "store: {retention_ms: 60000}\ntenants: {acme: {retention_ms: 60000}}\n",
            "tenants.acme.retention_ms: 60000 ms is not shorter than store.retention_ms",
        ),
        ("tenants: {acme: {rpm_limit: 5}}\n", "tenants.acme.rpm_limit"),
    ],
    ids=["cap-without-limits", "retention-not-shorter", "unknown"],
)
def test_a_tenant_setting_nothing_reads_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert message in str(info.value)
    assert "rollguard.yaml" in str(info.value)


def test_a_request_naming_no_max_tokens_gets_its_tenants_cap_upstream(
    gateway: GatewayFactory, stub: Stub
) -> None:
    """A cap must bind a request that names no budget: the cap is sent upstream as ``max_tokens``
    (the tenant's own, else ``tenants.default``'s, else the policy's ``params``); a request naming a
    smaller budget keeps it."""
    policies = [{"id": "limits", "type": "limits", "params": {"max_tokens": 50}}]
    tenants = {"acme": {"max_tokens": 10}, "default": {"max_tokens": 20}}
    with gateway(gateway={"api_keys": KEYS}, policies=policies, tenants=tenants) as url:
        stub.reset()
        assert _chat(url, "sk-acme").status_code == 200
        assert _chat(url, "sk-beta").status_code == 200
        assert _chat(url, "sk-acme", max_tokens=5).status_code == 200
        assert _chat(url, "sk-acme", max_tokens=None).status_code == 200
        sent = [r["body"].get("max_tokens") for r in stub.requests()]
    assert sent == [10, 20, 5, 10]
    with gateway(gateway={"api_keys": KEYS}, policies=[{"id": "limits", "type": "limits"}]) as url:
        stub.reset()
        assert _chat(url, "sk-acme", max_tokens=None).status_code == 200
        assert stub.requests()[0]["body"].get("max_tokens") is None  # no cap: nothing added
