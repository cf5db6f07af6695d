"""The flag result cache (``gateway.flags.cache.CachedFlags``) against a real Unleash server: on
10,000 user ids, a 37 % rollout with control / canary variants, the cached answers (first a miss,
then a hit) equal the server's own assignment (its playground API evaluates the same ids), and a
change on the server reaches cached contexts. Skipped without ``ROLLGUARD_TEST_UNLEASH_URL``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.flags import FlagContext, Flags
from gateway.flags.cache import CachedFlags
from tests.integration.test_unleash_flags import (
    ADMIN_TOKEN,
    ENV,
    URL,
    Admin,
    eventually,
    settings,
)
from tests.integration.test_unleash_flags import admin as admin
from tests.integration.test_unleash_flags import flag_name as flag_name
from tests.integration.test_unleash_flags import pytestmark as _unleash_marks

pytestmark = _unleash_marks

IDS = [f"user-{i}" for i in range(10_000)]
BATCH = 1_000


@pytest.fixture()
def cached() -> Iterator[CachedFlags]:
    f = Flags(settings())
    f.start(wait_s=10)
    yield CachedFlags(f, settle_s=0.0)
    f.close()


def server_assignment(admin: Admin, name: str, ids: list[str]) -> dict[str, tuple[bool, str | None]]:
    """``user id -> (enabled, variant or None)`` as the Unleash server evaluates ``name`` (advanced
    playground, ``BATCH`` ids per call)."""
    out: dict[str, tuple[bool, str | None]] = {}
    for i in range(0, len(ids), BATCH):
        body = {
            "environments": [ENV],
            "projects": "*",
            "context": {"appName": "rollguard", "userId": ",".join(ids[i : i + BATCH])},
        }
        result = admin.call("POST", "/admin/playground/advanced", body)
        feature = next(f for f in result["features"] if f["name"] == name)
        for row in feature["environments"][ENV]:
            variant = row["variant"]
            out[row["context"]["userId"]] = (
                bool(row["isEnabled"]),
                variant["name"] if variant.get("enabled") else None,
            )
    return out


def test_cached_assignment_matches_the_server_on_10000_ids(
    admin: Admin,
    cached: CachedFlags,
    flag_name: str,
) -> None:
    assert ADMIN_TOKEN and URL
    variants = [
        {"name": n, "weight": 500, "weightType": "variable", "stickiness": "default"}
        for n in ("control", "canary")
    ]
    admin.create_rollout(flag_name, 37, variants)
    assert eventually(lambda: flag_name in cached.flags.describe()["flags"])
    expected = server_assignment(admin, flag_name, IDS)
    assert len(expected) == len(IDS)
    for _ in range(2):  # the first pass fills the cache, the second is answered from it
        for uid in IDS:
            snap = cached.evaluate([], FlagContext(user_id=uid), variant_flags=[flag_name])
            assert (snap.enabled[flag_name], snap.variants.get(flag_name)) == expected[uid], uid
    assert cached.hits >= len(IDS)
    on = sum(e for e, _ in expected.values())
    assert 3_400 <= on <= 4_000, on  # 37 % of 10,000, give or take the hash's spread


def test_a_server_change_reaches_cached_contexts(
    admin: Admin,
    cached: CachedFlags,
    flag_name: str,
) -> None:
    sid = admin.create_rollout(flag_name, 0)
    assert eventually(lambda: flag_name in cached.flags.describe()["flags"])
    ctx = FlagContext(user_id="alice")
    assert not cached.evaluate([flag_name], ctx).enabled[flag_name]
    assert not cached.evaluate([flag_name], ctx).enabled[flag_name]
    admin.set_rollout(flag_name, sid, 100)
    assert eventually(lambda: cached.evaluate([flag_name], ctx).enabled[flag_name])
