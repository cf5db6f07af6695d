"""The rollout judge (issue 8 item 2): the always-valid one-sided test keeps its false-alarm level
under continuous peeking, detects real regressions, and a step never passes on missing, stale,
too little or mis-split data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from detectors import sequential
from detectors.rollout_judge import (
    Action,
    MetricData,
    Moments,
    Outcome,
    StepData,
    evaluate_metric,
    judge_step,
    srm_check,
    step_data_of,
)
from rollguard.rollout import MetricSpec, RolloutPlan, parse_plan

RATE = MetricSpec(name="refusal_rate", tolerance=0.01, kind="guardrail")


def _plan(**kw: object) -> RolloutPlan:
    base: dict[str, object] = {
        "flag": "model-rollout",
        "steps": [10, 50, 100],
        "min_samples": 300,
        "min_duration_s": 60,
        "metrics": [
            {"name": "refusal_rate", "tolerance": 0.01, "kind": "guardrail"},
            {"name": "reply_length_ratio", "tolerance": 0.15, "tolerance_type": "relative", "kind": "signal"},
        ],
    }
    base.update(kw)
    return parse_plan(base)


def _bernoulli(rng: np.random.Generator, p: float, n: int) -> Moments:
    return Moments.of(rng.random(n) < p)


def _normal(rng: np.random.Generator, mu: float, n: int) -> Moments:
    return Moments.of(rng.normal(mu, 0.8, n))


def _step(
    rng: np.random.Generator,
    *,
    n_control: int = 2700,
    n_canary: int = 300,
    refusal: float = 0.02,
    log_len: float = 0.0,
    age: float | None = 1.0,
    elapsed: float = 120.0,
) -> StepData:
    metrics = {
        "refusal_rate": MetricData(_bernoulli(rng, 0.02, n_control), _bernoulli(rng, refusal, n_canary)),
        "reply_length_ratio": MetricData(_normal(rng, 6.5, n_control), _normal(rng, 6.5 + log_len, n_canary)),
    }
    return StepData(0, n_control, n_canary, metrics, elapsed, age, {"flag": "model-rollout", "percent": 10})


# ---- the sequential test ---------------------------------------------------------------------------------


def test_halfwidth_is_where_the_one_sided_statistic_reaches_one_over_alpha() -> None:
    for v, tau2, alpha in ((1e-4, 1e-4, 0.05), (3e-6, 4e-4, 0.00625), (0.5, 0.01, 0.01)):
        w = sequential.one_sided_halfwidth(v, tau2, alpha)
        assert sequential.log_one_sided_lr(w, v, tau2) == pytest.approx(math.log(1 / alpha), abs=1e-9)
        assert w > stats.norm.ppf(1 - alpha) * math.sqrt(v)  # wider than a fixed-sample bound
    assert sequential.log_one_sided_lr(-0.1, 1e-4, 1e-4) < sequential.log_one_sided_lr(0.1, 1e-4, 1e-4)
    with pytest.raises(ValueError):
        sequential.one_sided_halfwidth(0.0, 1e-4, 0.05)


def test_type_one_error_at_the_boundary_under_continuous_peeking() -> None:
    """H0 at its boundary (canary exactly control + tolerance), 1,000 streams looked at after every
    50 observations up to 5,000: the one-sided test rejects in at most alpha of them, while a
    fixed-sample z-test looked at as often rejects far more."""
    rng = np.random.default_rng(7)
    alpha, sd, tau2 = 0.05, 1.0, 0.04
    looks = np.arange(50, 5001, 50)
    steps = rng.normal(0.0, sd, size=(1000, looks[-1]))
    means = np.cumsum(steps, axis=1)[:, looks - 1] / looks
    w = np.array([sequential.one_sided_halfwidth(sd * sd / n, tau2, alpha) for n in looks])
    always_valid = float(((means - w) > 0).any(axis=1).mean())
    naive = float((means * np.sqrt(looks) / sd > stats.norm.ppf(1 - alpha)).any(axis=1).mean())
    assert always_valid <= alpha
    assert naive > 3 * alpha


def test_rate_metric_fails_ok_or_straddles() -> None:
    a = 0.01
    ctrl = Moments(20000, 400.0, 400.0)  # 2 %
    bad = evaluate_metric(RATE, MetricData(ctrl, Moments(2000, 140.0, 140.0)), a)  # 7 %
    assert bad.status == "fail" and bad.lower > bad.tolerance == 0.01
    good = evaluate_metric(RATE, MetricData(ctrl, Moments(20000, 400.0, 400.0)), a)
    assert good.status == "ok" and good.upper < 0.01
    unsure = evaluate_metric(RATE, MetricData(ctrl, Moments(300, 9.0, 9.0)), a)
    assert unsure.status == "no_breach" and unsure.lower < 0.01 < unsure.upper
    few = evaluate_metric(RATE, MetricData(ctrl, Moments(10, 5.0, 5.0)), a)
    assert few.status == "no_data"
    rel = MetricSpec(name="refusal_rate", tolerance=0.5, tolerance_type="relative")
    assert evaluate_metric(rel, MetricData(ctrl, Moments(2000, 140.0, 140.0)), a).tolerance == pytest.approx(
        0.01
    )


def test_decrease_is_bad_points_the_other_way() -> None:
    spec = MetricSpec(name="block_rate", direction="decrease_is_bad", tolerance=-0.01)
    ctrl = Moments(20000, 2000.0, 2000.0)  # 10 % blocked
    dropped = evaluate_metric(spec, MetricData(ctrl, Moments(3000, 90.0, 90.0)), 0.01)  # 3 %
    assert dropped.status == "fail" and dropped.upper < -0.01
    rose = evaluate_metric(spec, MetricData(ctrl, Moments(3000, 600.0, 600.0)), 0.01)  # 20 %
    assert rose.status == "ok"


def test_p95_latency_uses_the_share_above_the_control_p95() -> None:
    rng = np.random.default_rng(1)
    spec = MetricSpec(name="latency_p95_ms", tolerance=0.25, tolerance_type="relative", kind="signal")
    ctrl = tuple(rng.lognormal(6.0, 0.4, 5000).tolist())
    same = tuple(rng.lognormal(6.0, 0.4, 2000).tolist())
    slow = tuple(rng.lognormal(6.5, 0.4, 2000).tolist())
    ok = evaluate_metric(spec, MetricData(control_values=ctrl, canary_values=same), 0.01)
    bad = evaluate_metric(spec, MetricData(control_values=ctrl, canary_values=slow), 0.01)
    assert ok.status == "ok" and bad.status == "fail"
    assert bad.extra["canary_p95_ms"] is not None and bad.extra["threshold_ms"] is not None
    assert bad.extra["canary_p95_ms"] > bad.extra["threshold_ms"]
    short = evaluate_metric(spec, MetricData(control_values=ctrl[:50], canary_values=slow), 0.01)
    assert short.status == "no_data"


# ---- the step outcome ----------------------------------------------------------------------------


def test_a_clean_step_passes_and_needs_approval() -> None:
    j = judge_step(_plan(), _step(np.random.default_rng(0)))
    assert (j.outcome, j.action, j.reason) == (Outcome.PASS, Action.PROMOTE, "passed")
    assert j.needs_approval
    assert not judge_step(_plan(auto_promote=True), _step(np.random.default_rng(0))).needs_approval


@pytest.mark.parametrize("age", [None, 121.0, 3600.0])
def test_stale_or_missing_data_is_inconclusive_never_pass(age: float | None) -> None:
    j = judge_step(_plan(), _step(np.random.default_rng(0), age=age))
    assert (j.outcome, j.action, j.reason) == (Outcome.INCONCLUSIVE, Action.WAIT, "stale")


def test_no_records_is_inconclusive() -> None:
    plan = _plan(min_samples=10, min_duration_s=0)
    empty = StepData(0, 0, 0, {}, 10_000.0, 0.0)
    j = judge_step(plan, empty)
    assert j.outcome is Outcome.INCONCLUSIVE and j.reason == "min_samples"
    assigned_but_unscored = StepData(0, 900, 100, {}, 10_000.0, 0.0)
    j = judge_step(plan, assigned_but_unscored)
    assert (j.outcome, j.reason, j.metric) == (Outcome.INCONCLUSIVE, "no_data", "refusal_rate")
    assert all(m.status == "no_data" for m in j.metrics)


def test_min_samples_and_min_duration_gate_a_pass() -> None:
    rng = np.random.default_rng(0)
    j = judge_step(_plan(), _step(rng, n_canary=200, n_control=1800))
    assert (j.outcome, j.reason) == (Outcome.INCONCLUSIVE, "min_samples")
    j = judge_step(_plan(), _step(rng, elapsed=59.0))
    assert (j.outcome, j.reason) == (Outcome.INCONCLUSIVE, "min_duration")


def test_guardrail_breach_rolls_back_signal_breach_pauses() -> None:
    rng = np.random.default_rng(3)
    j = judge_step(_plan(), _step(rng, n_control=18000, n_canary=2000, refusal=0.08))
    assert (j.outcome, j.action, j.reason, j.metric) == (
        Outcome.FAIL,
        Action.ROLLBACK,
        "guardrail_breach",
        "refusal_rate",
    )
    j = judge_step(_plan(), _step(rng, n_control=18000, n_canary=2000, log_len=math.log(1.3)))
    assert (j.outcome, j.action, j.reason, j.metric) == (
        Outcome.FAIL,
        Action.PAUSE,
        "signal_breach",
        "reply_length_ratio",
    )
    both = judge_step(
        _plan(), _step(rng, n_control=18000, n_canary=2000, refusal=0.08, log_len=math.log(1.3))
    )
    assert both.action is Action.ROLLBACK and set(both.failed) == {"refusal_rate", "reply_length_ratio"}


def test_a_breach_fails_before_the_minimum_sample() -> None:
    j = judge_step(
        _plan(min_samples=5000), _step(np.random.default_rng(4), n_control=9000, n_canary=1000, refusal=0.15)
    )
    assert j.outcome is Outcome.FAIL


def test_sample_ratio_mismatch_pauses() -> None:
    rng = np.random.default_rng(5)
    j = judge_step(_plan(), _step(rng, n_control=800, n_canary=200))  # configured 10 %, delivered 20 %
    assert (j.outcome, j.action, j.reason) == (Outcome.INCONCLUSIVE, Action.PAUSE, "srm")
    assert j.srm.p < 0.001
    fine = judge_step(_plan(), _step(rng, n_control=2700, n_canary=300))
    assert fine.srm.checked and fine.srm.p > 0.001


def test_srm_check_equals_scipy_chisquare() -> None:
    for ctrl, can, share in ((800, 200, 0.1), (9050, 950, 0.1), (520, 480, 0.5), (99_000, 1_130, 0.01)):
        got = srm_check(ctrl, can, share)
        ref = stats.chisquare([ctrl, can], f_exp=[(ctrl + can) * (1 - share), (ctrl + can) * share])
        assert got.chi2 == pytest.approx(float(ref.statistic)) and got.p == pytest.approx(float(ref.pvalue))
    assert not srm_check(3, 0, 0.01).checked


def test_sequential_split_test_keeps_its_level_under_peeking_and_gates_the_chi_square() -> None:
    """500 honest 10/90 splits of 5,000 assignments, looked at every 50: the always-valid split
    test crosses log(1/0.05) in at most 5 %, the chi-square at p < 0.05 in far more; a broken
    split crosses both at once."""
    rng = np.random.default_rng(3)
    looks = np.arange(50, 5001, 50)
    canary = np.cumsum(rng.random((500, 5000)) < 0.1, axis=1)[:, looks - 1]
    bf = np.array(
        [
            [sequential.log_split_bayes_factor(int(x), int(n), 0.1) for x, n in zip(row, looks, strict=True)]
            for row in canary
        ]
    )
    assert float((bf >= math.log(20)).any(axis=1).mean()) <= 0.05
    chi = np.array(
        [
            [srm_check(int(n - x), int(x), 0.1).p for x, n in zip(row, looks, strict=True)]
            for row in canary[:100]
        ]
    )
    assert float((chi < 0.05).any(axis=1).mean()) > 0.15
    broken = srm_check(800, 200, 0.1)
    assert broken.mismatch(0.001) and broken.log_bf > math.log(1000)
    borderline = srm_check(8870, 1130, 0.1)  # chi-square p < 0.001, but one look's worth only
    assert borderline.p < 0.001 and not borderline.mismatch(0.001)


def test_judgment_is_a_serialisable_reproducible_evidence_record() -> None:
    plan = _plan()
    data = _step(np.random.default_rng(0), n_control=18000, n_canary=2000, refusal=0.08)
    rec = judge_step(plan, data).to_dict()
    text = json.dumps(rec, allow_nan=False)
    assert json.loads(text) == rec
    assert rec["plan_version"] == plan.version() and rec["flag_snapshot"]["flag"] == "model-rollout"
    assert rec["n"] == {"control": 18000, "canary": 2000} and rec["metric_alpha"] == pytest.approx(0.025)
    m = rec["metrics"][0]
    assert set(m) >= {
        "control",
        "canary",
        "effect",
        "interval",
        "statistic",
        "threshold",
        "alpha",
        "tolerance",
    }
    assert m["control"]["n"] == 18000 and m["interval"][0] > m["tolerance"]
    assert judge_step(plan, data).to_dict() == rec
    assert judge_step(plan, step_data_of(json.loads(text))).to_dict() == rec  # reproduced offline
    with pytest.raises(ValueError):
        judge_step(plan, StepData(2, 0, 0, {}, 0.0, 0.0))  # the 100 % step is not judged


def test_aa_false_fail_rate_by_simulation() -> None:
    """200 synthetic A/A steps at the default tolerances, judged after every 50 canary requests up
    to 2,000: no step fails more often than the plan's alpha."""
    plan = _plan(min_samples=10_000)  # never pass: keep looking
    rng = np.random.default_rng(11)
    fails = 0
    for _ in range(200):
        c_ref, k_ref = rng.random(18000) < 0.02, rng.random(2000) < 0.02
        c_len, k_len = rng.normal(6.5, 0.8, 18000), rng.normal(6.5, 0.8, 2000)
        for look in range(1, 41):
            nk, nc = 50 * look, 450 * look
            metrics = {
                "refusal_rate": MetricData(Moments.of(c_ref[:nc]), Moments.of(k_ref[:nk])),
                "reply_length_ratio": MetricData(Moments.of(c_len[:nc]), Moments.of(k_len[:nk])),
            }
            if judge_step(plan, StepData(0, nc, nk, metrics, 1e6, 0.0)).outcome is Outcome.FAIL:
                fails += 1
                break
    assert fails / 200 <= plan.alpha
