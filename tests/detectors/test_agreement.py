"""Agreement statistics and Dawid-Skene aggregation on known and simulated data."""

from __future__ import annotations

import random

import pytest
from sklearn.metrics import cohen_kappa_score

from detectors.agreement import (
    alpha_per_label,
    dawid_skene,
    detector_precision,
    krippendorff_alpha,
    pair_kappas,
)


def test_krippendorff_reference_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal example: 0.743.
    rows = {
        "A": "1 2 3 3 2 1 4 1 2 . . .",
        "B": "1 2 3 3 2 2 4 1 2 5 . 3",
        "C": ". 3 3 3 2 3 4 2 2 5 1 .",
        "D": "1 2 3 3 2 4 4 1 2 5 1 .",
    }
    votes: dict[str, dict[str, str]] = {}
    for coder, line in rows.items():
        for unit, v in enumerate(line.split()):
            if v != ".":
                votes.setdefault(f"u{unit}", {})[coder] = v
    assert krippendorff_alpha(votes) == pytest.approx(0.743, abs=0.001)


def test_pair_kappas_match_sklearn_and_skip_thin_pairs() -> None:
    a = ["x", "x", "y", "y", "x", "y"]
    b = ["x", "y", "y", "y", "x", "x"]
    votes = {f"i{n}": {"ana": a[n], "ben": b[n]} for n in range(6)}
    votes["i9"] = {"ana": "x", "cy": "x"}
    ks = pair_kappas(votes)
    assert [(k.a, k.b, k.n) for k in ks] == [("ana", "ben", 6)]
    assert ks[0].kappa == pytest.approx(cohen_kappa_score(a, b), abs=1e-4)


def test_alpha_undefined_cases_and_per_label() -> None:
    assert krippendorff_alpha({"i1": {"a": "x"}}) is None
    assert krippendorff_alpha({"i1": {"a": "x", "b": "x"}, "i2": {"a": "x", "b": "x"}}) is None
    perfect = {f"i{n}": {"a": lab, "b": lab} for n, lab in enumerate("xyxyzz")}
    assert krippendorff_alpha(perfect) == 1.0
    assert set(alpha_per_label(perfect).values()) == {1.0}


def test_dawid_skene_beats_majority_with_a_contrarian_reviewer() -> None:
    rng = random.Random(7)
    labels = ["ok", "bad"]
    truth = {f"i{n}": rng.choice(labels) for n in range(400)}
    acc = {"r1": 0.9, "r2": 0.85, "r3": 0.8, "contrarian": 0.1, "noisy": 0.55}
    votes: dict[str, dict[str, str]] = {}
    for item, t in truth.items():
        for r in rng.sample(sorted(acc), 3):
            right = rng.random() < acc[r]
            votes.setdefault(item, {})[r] = t if right else next(x for x in labels if x != t)
    agg = dawid_skene(votes)
    ds_acc = sum(agg[i].label == truth[i] for i in truth) / len(truth)
    maj = 0
    for i, rv in votes.items():
        top = max(labels, key=lambda lab: list(rv.values()).count(lab))
        maj += top == truth[i]
    assert ds_acc > maj / len(truth)
    assert ds_acc > 0.9
    assert all(0.0 <= a.posterior <= 1.0 for a in agg.values())
    assert abs(sum(agg["i0"].distribution.values()) - 1.0) < 1e-3


def test_dawid_skene_is_unsure_on_a_split_vote() -> None:
    votes = {f"i{n}": {"a": "x", "b": "x"} for n in range(20)}
    votes.update({f"j{n}": {"a": "y", "b": "y"} for n in range(20)})
    votes["split"] = {"a": "x", "b": "y"}
    agg = dawid_skene(votes)
    assert agg["split"].posterior < 0.8
    assert agg["i0"].posterior > 0.9
    assert dawid_skene({}) == {}


def test_detector_precision() -> None:
    p = detector_precision([(["pii"], True), (["pii", "hedging"], False), (["hedging"], False)])
    assert (p["pii"].judged, p["pii"].confirmed, p["pii"].precision) == (2, 1, 0.5)
    assert p["hedging"].precision == 0.0
