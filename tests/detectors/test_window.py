"""Window detectors: CUSUM calibration, input drift, the variant comparison and state round trips,
on real shipped traffic."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from detectors.canary import VariantComparison
from detectors.drift import CusumMonitor, Floors, InputDrift, calibrate_cusum_h, domain_auc, psi
from detectors.engine import EngineConfig, WindowEngine
from detectors.reference_model import ReferenceModel
from gateway.tools import eval as E

FLOORS = Floors(min_sample=100)


def test_cusum_threshold_grows_with_target_arl() -> None:
    ref = (np.random.default_rng(0).random(2000) < 0.15).astype(float)
    k = 0.02 / (2 * math.sqrt(0.15 * 0.85))
    h_small = calibrate_cusum_h(ref, True, k, 1e4, seed=1)
    h_big = calibrate_cusum_h(ref, True, k, 1e7, seed=1)
    assert 0 < h_small < h_big


def test_cusum_detects_a_real_length_shift(small_pool: list[E.PoolItem]) -> None:
    mon = CusumMonitor("reply_log_chars", "log_length", FLOORS, reference_size=500)
    rng = random.Random(0)
    alert = None
    for i in range(4000):
        v = small_pool[rng.randrange(len(small_pool))].metrics["reply_log_chars"]
        if i >= 1500:
            v += math.log(1.5)
        a = mon.update(v, f"id{i}", i, {"variant": "canary"})
        if a is not None:
            alert = (i, a)
            break
    assert alert is not None
    i, a = alert
    assert i >= 1500
    assert a.effect >= 1.15 and a.statistic == "cusum" and a.value > a.threshold
    assert len(a.exemplars_current) == 10 and len(a.exemplars_reference) == 10
    assert a.group == {"variant": "canary"}


def test_cusum_state_round_trip_continues_identically(small_pool: list[E.PoolItem]) -> None:
    a = CusumMonitor("refusal", "rate", FLOORS, reference_size=300)
    vals = [small_pool[i % len(small_pool)].metrics["refusal"] for i in range(700)]
    for i, v in enumerate(vals[:500]):
        a.update(v, str(i), i, {})
    b = CusumMonitor.from_dict(json.loads(json.dumps(a.to_dict())), FLOORS)
    for i, v in enumerate(vals[500:], start=500):
        a.update(v, str(i), i, {})
        b.update(v, str(i), i, {})
    assert a.to_dict() == b.to_dict()


def test_psi_of_identical_and_shifted_mixes() -> None:
    assert psi(np.array([50, 50.0]), np.array([50, 50.0])) == pytest.approx(0.0)
    assert psi(np.array([90, 10.0]), np.array([40, 60.0])) > 0.2


def test_domain_auc_on_clinc_domains(reference: ReferenceModel) -> None:
    a = E.clinc_items(reference, ("banking", "work"), 0)
    b = E.clinc_items(reference, ("travel", "meta"), 0)
    same, _ = domain_auc([x.prompt for x in a[:600]], [x.prompt for x in a[600:800]])
    diff, _ = domain_auc([x.prompt for x in a[:600]], [x.prompt for x in b[:200]])
    assert same < 0.6 < 0.9 < diff


def test_input_drift_alerts_on_topic_shift_with_explanations(reference: ReferenceModel) -> None:
    before = E.clinc_items(reference, ("banking", "credit_cards", "work"), 1)
    after = E.clinc_items(reference, ("travel", "kitchen_and_dining"), 2)
    stream = E.topic_shift_stream(before, after, 1400, 1000, 0)
    drift = InputDrift(FLOORS, reference_size=500, window=200, check_every=50, null_splits=6)
    alerts = []
    for i, obs in enumerate(stream):
        for a in drift.update(obs.input, {}):
            alerts.append((i, a))
    assert alerts, "topic shift not detected"
    i, _ = alerts[0]
    assert 1000 <= i <= 1400
    dc = next(a for _, a in alerts if a.detector == "input_domain_classifier")
    assert len(dc.exemplars_current) >= 10 and len(dc.exemplars_reference) >= 10
    assert any(f["side"] == "current" for f in dc.top_features)
    restored = InputDrift.from_dict(json.loads(json.dumps(drift.to_dict())), FLOORS)
    assert restored.null_mu == drift.null_mu and len(restored.cur) == len(drift.cur)


def test_variant_comparison_detects_refusal_shift_and_not_aa(small_pool: list[E.PoolItem]) -> None:
    rng = random.Random(0)
    shifted = VariantComparison("refusal", "rate", FLOORS, "canary")
    same = VariantComparison("refusal", "rate", FLOORS, "canary")
    hit = None
    n_canary = 0
    for i in range(40_000):
        v = small_pool[rng.randrange(len(small_pool))].metrics["refusal"]
        canary = rng.random() < 0.1
        n_canary += canary
        variant = "canary" if canary else "control"
        assert same.update(variant, v, str(i), i, {}) is None
        bumped = 1.0 if canary and rng.random() < 0.10 else v
        a = shifted.update(variant, bumped, str(i), i, {})
        if a is not None and hit is None:
            hit = (n_canary, a)
    assert hit is not None
    assert hit[1].effect >= 0.02 and hit[1].p_value is not None and hit[1].p_value <= FLOORS.comparison_alpha
    summary = shifted.summary()
    assert summary["canary"]["mean"] > summary["control"]["mean"]


def test_engine_round_trip_and_summary(small_pool: list[E.PoolItem]) -> None:
    cfg = EngineConfig(reference_size=200, input_reference_size=200, input_window=100, floors=FLOORS)
    stream = E.aa_stream(small_pool, 800, 3)
    a = WindowEngine(cfg)
    for obs in stream[:500]:
        a.update(obs)
    state = json.loads(json.dumps(a.to_dict()))
    b = WindowEngine.from_dict(state, cfg)
    for obs in stream[500:]:
        assert [x.to_dict() for x in a.update(obs)] == [x.to_dict() for x in b.update(obs)]
    s = b.summary()
    assert s["observations"] == 800
    assert "variant=canary" in s["output"] and s["comparisons"]


def test_engine_config_from_yaml_mapping() -> None:
    cfg = EngineConfig.from_config(
        {"reference_size": 500, "floors": {"rate_delta": 0.03}, "group_by": ["all"]}
    )
    assert cfg.reference_size == 500 and cfg.floors.rate_delta == 0.03 and cfg.group_by == ("all",)
    with pytest.raises(TypeError):
        EngineConfig.from_config({"floors": {"nope": 1}})


def test_floors_from_yaml_strings() -> None:
    import yaml

    cfg = yaml.safe_load("floors: {arl0: 1.0e7, min_sample: 50}\nreference_size: 300\n")
    eng = EngineConfig.from_config(cfg)
    assert eng.floors.arl0 == 1e7 and eng.floors.min_sample == 50 and eng.reference_size == 300
