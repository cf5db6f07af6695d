"""The alert lifecycle (open / update / resolve per detector, signal and group; one anomaly per
shift across groups; canary comparisons kept apart) on real shipped replies replayed through the
real window engine."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from detectors.alerts import LifecycleConfig
from detectors.drift import Floors
from detectors.engine import EngineConfig, Observation, WindowEngine
from gateway.tools import eval as E

CFG = EngineConfig(
    reference_size=300,
    input_reference_size=300,
    input_window=100,
    input_check_every=50,
    input_group_by=(),  # these shifts are in the replies; input drift has its own tests
    floors=Floors(min_sample=100),
    alerts=LifecycleConfig(resolve_after=400),
)


@pytest.fixture()
def pool(small_pool: list[E.PoolItem]) -> list[E.PoolItem]:
    return small_pool


def _longer(obs: Observation, factor: float = 1.6) -> Observation:
    metrics = {**obs.metrics, "reply_log_chars": obs.metrics["reply_log_chars"] + math.log(factor)}
    return replace(obs, metrics=metrics)


def _run(engine: WindowEngine, stream: list[Observation], start: int = 0) -> tuple[list, list]:
    firings, events = [], []
    for i, obs in enumerate(stream, start=start):
        firings += [(i, a) for a in engine.update(obs)]
        if (i + 1) % 100 == 0:
            events += [(i, e) for e in engine.drain()]
    return firings, events


def _length_opens(events: list) -> list:
    return [
        (i, e)
        for i, e in events
        if e["event"] == "open" and e["detector"] == "reply_log_chars" and e["statistic"] == "cusum"
    ]


def test_one_tenant_shift_is_one_anomaly_naming_the_tenant_first_then_resolves_and_reopens(
    pool: list[E.PoolItem],
) -> None:
    stream = E.one_shift_stream(pool, pool, 2000, 0, 4400, seed=5, canary_share=0.0)
    # replies of tenant t1 get 60 % longer for requests 2,000-3,999 and again from 5,600 on
    shifted = [
        _longer(o) if o.tenant == "t1" and (2000 <= i < 4000 or i >= 5600) else o
        for i, o in enumerate(stream)
    ]
    firings, events = _run(WindowEngine(CFG), shifted)
    first_shift = [(i, a) for i, a in firings if 2000 <= i < 4000 and a.detector == "reply_log_chars"]
    # the detectors keep firing: again after every CUSUM restart, and in every group the shift reaches
    assert len(first_shift) >= 5
    assert {a.group.get("tenant", "all") for _, a in first_shift} >= {"t1", "all"}
    opens = _length_opens(events)
    assert len([i for i, _ in opens if i < 5600]) == 1, [e["group_keys"] for _, e in opens]
    first = opens[0][1]
    assert 2000 <= opens[0][0] < 2600
    # the anomaly record keeps the Alert fields and adds the lifecycle ones
    anomaly = first["anomaly"]
    for key in ("detector", "statistic", "effect", "group", "exemplars_current", "window_start_id"):
        assert key in anomaly
    assert anomaly["id"] == first["id"] and anomaly["groups"] == first["groups"]
    # later groups join as updates: the most specific explaining group (tenant t1) first, all last
    updates = [e for _, e in events if e["id"] == first["id"] and e["event"] == "update"]
    final = updates[-1] if updates else first
    assert final["group_keys"][0] == "tenant=t1" and final["group_keys"][-1] == "all"
    assert "tenant=t2" not in final["group_keys"]
    assert final["count"] >= 5
    # quiet after the shift: resolved once every group has seen resolve_after requests without firing
    resolved = [(i, e) for i, e in events if e["id"] == first["id"] and e["event"] == "resolve"]
    assert len(resolved) == 1 and 4000 + 400 <= resolved[0][0] < 5600
    assert resolved[0][1]["status"] == "resolved"
    # the same shift again after the resolve is a new anomaly
    again = [(i, e) for i, e in opens if i >= 5600]
    assert len(again) == 1 and again[0][1]["id"] != first["id"]


def test_lifecycle_survives_a_state_round_trip(pool: list[E.PoolItem]) -> None:
    stream = E.one_shift_stream(pool, pool, 1500, 0, 1500, seed=6, canary_share=0.0)
    stream = [_longer(o) if i >= 1500 else o for i, o in enumerate(stream)]
    a = WindowEngine(CFG)
    _, ev_a = _run(a, stream[:2000])
    assert len(_length_opens(ev_a)) == 1
    b = WindowEngine.from_dict(json.loads(json.dumps(a.to_dict())), CFG)
    rest_a = _run(a, stream[2000:], start=2000)
    rest_b = _run(b, stream[2000:], start=2000)
    assert rest_b[1] == rest_a[1]
    assert _length_opens(rest_b[1]) == []  # the open incident continued: no second anomaly
    (open_,) = [x for x in b.summary()["alerts"]["open"] if x["detector"] == "reply_log_chars"]
    assert open_["count"] > len([1 for _, f in rest_b[0] if f.detector == "reply_log_chars"])


def test_canary_comparison_keeps_its_own_anomaly(pool: list[E.PoolItem]) -> None:
    stream = E.one_shift_stream(pool, pool, 6000, 0, 0, seed=7, canary_share=0.2)
    stream = [_longer(o) if o.variant == "canary" else o for o in stream]
    firings, events = _run(WindowEngine(CFG), stream)
    comparisons = [a for _, a in firings if a.detector == "reply_log_chars" and "control" in a.group]
    assert len(comparisons) >= 5  # fires at every look while the canary stays longer
    opens = [e for _, e in events if e["event"] == "open" and e["detector"] == "reply_log_chars"]
    canary = [e for e in opens if e["statistic"] == "msprt_log_lr"]
    over_time = [e for e in opens if e["statistic"] == "cusum"]
    assert len(canary) == 2  # one per (model, tenant) comparison group, never merged
    assert {e["anomaly"]["tenant"] for e in canary} == {"t1", "t2"}
    assert all(e["anomaly"]["variant"] == "canary" for e in canary)
    assert all(len(e["group_keys"]) == 1 for e in canary)
    # the over-time CUSUMs see the canary too (variant=canary, all, ...): one more anomaly, not one
    # per group, and never merged into the comparisons
    assert len(over_time) <= 1


def test_lifecycle_config_from_yaml_mapping() -> None:
    cfg = EngineConfig.from_config({"alerts": {"resolve_after": "500"}})
    assert cfg.alerts.resolve_after == 500
    with pytest.raises(TypeError):
        EngineConfig.from_config({"alerts": {"cooldown": 3}})
