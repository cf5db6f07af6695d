"""The rollout actuator against a real Unleash server (7.x): each step's variant weights go through
the Admin API and reach a polling ``Flags`` client within its refresh interval + 1 s; a rollback
also writes the store override, which wins at once. Skipped without ``ROLLGUARD_TEST_UNLEASH_URL``
(see tests/integration/test_unleash_flags.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from gateway.flags import FlagContext, Flags
from gateway.rollout.actuator import UnleashActuator
from gateway.rollout.overrides import OverrideListener, OverrideStore
from rollguard.rollout import RolloutPlan
from tests.integration.test_unleash_flags import ADMIN_TOKEN, ENV, URL, Admin, settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.unleash,
    pytest.mark.skipif(not URL, reason="ROLLGUARD_TEST_UNLEASH_URL is unset"),
]

USERS = [FlagContext(user_id=f"user-{i}") for i in range(300)]


def canary_share(f: Flags, flag: str) -> float:
    snaps = [f.evaluate([], ctx, variant_flags=[flag]) for ctx in USERS]
    return sum(s.variants.get(flag) == "canary" for s in snaps) / len(snaps)


@pytest.fixture()
def flag_name() -> Iterator[str]:
    import uuid

    name = f"rg-ro-{uuid.uuid4().hex[:10]}"
    admin = Admin(URL, ADMIN_TOKEN)
    admin.create_rollout(
        name, 100, [{"name": "control", "weight": 1000, "weightType": "variable", "stickiness": "default"}]
    )
    yield name
    admin.delete(name)


async def test_steps_through_the_admin_api_reach_flags_within_refresh_plus_one_second(
    flag_name: str, redis_url: str
) -> None:
    plan = RolloutPlan.model_validate(
        {
            "flag": flag_name,
            "subject": {"kind": "model", "control": "a", "canary": "b"},
            "steps": [10, 50, 100],
        }
    )
    client = aioredis.from_url(redis_url)
    flags = Flags(settings())
    flags.start(wait_s=10)
    listener = OverrideListener(client, flags.overrides, check_s=30)
    await listener.start()
    act = UnleashActuator(URL, ADMIN_TOKEN, environment=ENV, overrides=OverrideStore(client))
    try:
        assert canary_share(flags, flag_name) == 0.0
        refresh = flags.settings.refresh_interval_s
        delays = []
        for percent in (10.0, 50.0):
            out = await act.apply(plan, percent, by="test", reason="step")
            assert out["via"] == "unleash" and out["strategy_id"]
            t0 = time.monotonic()
            while not (percent / 100 - 0.08 < canary_share(flags, flag_name) < percent / 100 + 0.08):
                assert time.monotonic() - t0 < refresh + 1.0, f"step {percent} % not seen in time"
                await asyncio.sleep(0.05)
            delays.append(time.monotonic() - t0)
        strategies = Admin(URL, ADMIN_TOKEN).call(
            "GET", f"/admin/projects/default/features/{flag_name}/environments/{ENV}/strategies"
        )
        weights = {v["name"]: (v["weight"], v["weightType"]) for v in strategies[0]["variants"]}
        assert weights == {"canary": (500, "fix"), "control": (500, "variable")}
        # a rollback: the override sends everyone to control at once, Unleash follows
        t0 = time.monotonic()
        await act.apply(plan, 0.0, by="test", reason="rollback", rollback=True)
        while canary_share(flags, flag_name) > 0:
            assert time.monotonic() - t0 < 1.0
            await asyncio.sleep(0.01)
        rollback_s = time.monotonic() - t0
        strategies = Admin(URL, ADMIN_TOKEN).call(
            "GET", f"/admin/projects/default/features/{flag_name}/environments/{ENV}/strategies"
        )
        assert [v["name"] for v in strategies[0]["variants"]] == ["control"]
        print(
            f"\nUnleash step seen after (s): {[round(d, 2) for d in delays]} (refresh {refresh} s); "
            f"rollback {rollback_s:.3f} s"
        )
    finally:
        await listener.aclose()
        await client.aclose()
        flags.close()
