"""The flag result cache (``gateway.flags.cache.CachedFlags``) over a real ``Flags`` in bootstrap
mode: same answers as ``Flags.evaluate``, hits for a repeated context, invalidation on kill /
revive / reload, no caching of anonymous contexts or of states with randomness or time, bounded
memory. The comparison with a real Unleash server's assignment on 10,000 ids is in
``tests/integration/test_flag_cache_unleash.py``."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import service
from gateway.flags import FlagContext, Flags, source
from gateway.flags.cache import CachedFlags
from rollguard.settings import FlagSettings
from tests.gateway.test_flags import STATE, rollout, write_state

NAMES = ["pii-on", "pii-off", "half", "half-by-user", "tenant-acme", "unknown"]
VARIANTS = ["model-rollout"]


@pytest.fixture()
def flags(tmp_path: Path) -> Iterator[Flags]:
    f = Flags(FlagSettings(bootstrap_file=write_state(tmp_path / "flags.json", STATE)))
    f.start()
    yield f
    f.close()


def _ask(c: CachedFlags | Flags, ctx: FlagContext) -> tuple[dict[str, bool], dict[str, str], dict[str, str]]:
    s = c.evaluate(NAMES, ctx, variant_flags=VARIANTS)
    return s.enabled, s.variants, s.payloads


def test_cached_answers_equal_direct_evaluation_and_repeat_from_the_cache(flags: Flags) -> None:
    cached = CachedFlags(flags, settle_s=0.0)
    for i in range(300):
        ctx = FlagContext(user_id=f"user-{i}", tenant="acme" if i % 2 else "other")
        direct = _ask(flags, ctx)
        assert _ask(cached, ctx) == direct
        assert _ask(cached, ctx) == direct
    assert (cached.hits, cached.misses) == (300, 300)


def test_a_hit_is_a_copy_the_caller_may_change(flags: Flags) -> None:
    cached = CachedFlags(flags, settle_s=0.0)
    ctx = FlagContext(user_id="alice")
    cached.evaluate(NAMES, ctx).enabled["pii-on"] = False
    assert cached.evaluate(NAMES, ctx).enabled["pii-on"] is True


def test_kill_revive_and_reload_invalidate(flags: Flags, tmp_path: Path) -> None:
    cached = CachedFlags(flags, settle_s=0.0)
    ctx = FlagContext(user_id="alice")
    assert cached.evaluate(["pii-on"], ctx).enabled["pii-on"]
    flags.kill("pii-on")
    assert not cached.evaluate(["pii-on"], ctx).enabled["pii-on"]
    flags.revive("pii-on")
    assert cached.evaluate(["pii-on"], ctx).enabled["pii-on"]
    write_state(Path(str(flags.settings.bootstrap_file)), {"version": 2, "features": [rollout("pii-on", 0)]})
    assert flags.reload()
    assert not cached.evaluate(["pii-on"], ctx).enabled["pii-on"]


def test_anonymous_contexts_are_never_cached(flags: Flags) -> None:
    cached = CachedFlags(flags, settle_s=0.0)
    on = sum(cached.evaluate(["half"], FlagContext()).enabled["half"] for _ in range(400))
    assert 120 <= on <= 280, on  # still spread at random, not one cached answer
    assert cached.hits == 0 and len(cached) == 0


@pytest.mark.parametrize(
    "strategy",
    [
        {"name": "flexibleRollout", "parameters": {"rollout": "50", "stickiness": "random", "groupId": "x"}},
        {"name": "gradualRolloutRandom", "parameters": {"percentage": "50"}},
        {
            "name": "default",
            "constraints": [
                {"contextName": "currentTime", "operator": "DATE_AFTER", "value": "2020-01-01T00:00:00Z"}
            ],
        },
    ],
    ids=["random-stickiness", "gradualRolloutRandom", "currentTime"],
)
def test_states_with_randomness_or_time_turn_the_cache_off(
    tmp_path: Path, strategy: dict[str, object]
) -> None:
    state = {"version": 2, "features": [{"name": "x", "enabled": True, "strategies": [strategy]}]}
    f = Flags(FlagSettings(bootstrap_file=write_state(tmp_path / "flags.json", state)))
    f.start()
    try:
        cached = CachedFlags(f, settle_s=0.0)
        for _ in range(3):
            cached.evaluate(["x"], FlagContext(user_id="alice"))
        assert cached.hits == 0 and len(cached) == 0
    finally:
        f.close()


def test_nothing_is_cached_while_a_new_state_settles(flags: Flags) -> None:
    cached = CachedFlags(flags, settle_s=3600.0)
    ctx = FlagContext(user_id="alice")
    for _ in range(3):
        cached.evaluate(["pii-on"], ctx)
    assert cached.hits == 0 and len(cached) == 0


def test_memory_is_bounded(flags: Flags) -> None:
    cached = CachedFlags(flags, max_entries=50, settle_s=0.0)
    for i in range(1000):
        cached.evaluate(NAMES, FlagContext(user_id=f"u{i}"))
    assert len(cached) == 50
    cached.evaluate(NAMES, FlagContext(user_id="u999"))
    assert cached.hits == 1  # the most recent entries are the ones kept


def test_an_override_map_change_invalidates(flags: Flags) -> None:
    """The store-backed override map (kill switch, rollout rollback) is part of the flag state: a
    cached answer never outlives a change of it (a rollback must reach cached contexts too)."""
    from gateway.rollout.overrides import Override

    cached = CachedFlags(flags, settle_s=0.0)
    ctx = FlagContext(user_id="alice")
    assert cached.evaluate(["pii-on"], ctx).enabled["pii-on"]
    assert cached.evaluate(["pii-on"], ctx).enabled["pii-on"]  # now a hit
    flags.overrides.replace({"pii-on": Override(killed=True)}, version=1)
    assert not cached.evaluate(["pii-on"], ctx).enabled["pii-on"]
    flags.overrides.replace({}, version=2)
    assert cached.evaluate(["pii-on"], ctx).enabled["pii-on"]


def _evaluate_protocols(root: Path) -> list[str]:
    """``module:Class`` of every ``Protocol`` class under ``root`` that declares ``evaluate``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            protocol = any(ast.unparse(b).endswith("Protocol") for b in node.bases)
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            if protocol and "evaluate" in methods:
                found.append(f"{path.relative_to(root.parent).as_posix()}:{node.name}")
    return found


def test_one_flag_source_protocol_serves_the_service_and_the_cache() -> None:
    """The result cache and the service once each declared the same ``evaluate`` signature."""
    root = Path(__file__).resolve().parents[2] / "gateway"
    assert _evaluate_protocols(root) == ["gateway/flags/source.py:FlagSource"]
    assert service.FlagSource is source.FlagSource
    assert source.FlagSource in source.VersionedFlagSource.__mro__  # the cache's is the same, extended
