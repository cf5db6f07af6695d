"""Window detectors, pure and serialisable (``to_dict`` / ``from_dict`` give JSON-ready state so a
worker can keep them in Redis).

* ``CusumMonitor`` — output drift of one metric stream (a shortcut signal's flag rate, log reply
  length, block/error rate): two-sided CUSUM (Page 1954) on standardised observations with the
  reference allowance ``k = floor / (2 sd)`` (half the practical effect floor), and the decision
  threshold ``h`` calibrated on the reference data by bootstrap simulation to a target in-control
  average run length ``arl0`` (observations between false alarms): ``h`` is the quantile of the
  maximum CUSUM over ``L`` simulated in-control observations such that P(alarm within L) =
  1 - exp(-L / arl0). Binary metrics are simulated as Bernoulli(p) with the Laplace-smoothed
  reference rate (so a reference with no positives does not give ``h = 0``).
* ``InputDrift`` — input drift of the prompts in a sliding window against a reference window:
  a domain-classifier test (hashed TF-IDF + multinomial naive Bayes, 2-fold out-of-fold ROC AUC; the
  null distribution of that AUC is calibrated by splitting the reference window against itself,
  threshold = null mean + z(alpha) * null sd), PSI + chi-square on categorical features and
  KS + Wasserstein on numeric ones.
* An alert needs a minimum sample, significance *and* an effect at or above a practical floor
  (``Floors``; all configurable).

Alerts are ``Alert`` records (the anomaly bundle of issue 3): detector, statistic, threshold,
effect size, p-value or ARL, window bounds, group, exemplar ids from both sides, severity.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import sparse, stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.naive_bayes import MultinomialNB

from detectors.features import fit_idf, tfidf, word_hasher

_INPUT_HASHER = word_hasher(2**15, (1, 2))


@dataclass(frozen=True, slots=True)
class Floors:
    """Practical effect floors and sample/significance settings (all configurable).

    ``rate_delta``: absolute change of a flag/block/error rate (0.02 = 2 points);
    ``length_ratio``: reply-length ratio (1.15 = +15 %), applied on log length;
    ``psi``: population stability index (0.2 = "significant shift" in credit-scoring practice);
    ``auc``: domain-classifier ROC AUC; ``wasserstein_sd``: Wasserstein distance of a numeric input
    feature in reference standard deviations; ``min_sample``: observations needed after the
    reference before any alert; ``alpha``: per-check significance of the window tests;
    ``comparison_alpha``: false-alarm
    probability of one canary-vs-control comparison over an unbounded stream (mSPRT);
    ``arl0``: target in-control average run length of each CUSUM, in observations.
    """

    rate_delta: float = 0.02
    length_ratio: float = 1.15
    psi: float = 0.2
    auc: float = 0.62
    wasserstein_sd: float = 0.25
    min_sample: int = 200
    alpha: float = 1e-4
    comparison_alpha: float = 0.001
    arl0: float = 10_000_000.0

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> Floors:
        """Build from the ``detectors.floors`` config mapping. Values are converted to the field's
        type (YAML reads ``1.0e7`` as a string); unknown keys raise ``TypeError``, unconvertible
        values ``ValueError``."""
        cfg = dict(cfg or {})
        defaults = cls()
        for key, value in cfg.items():
            if hasattr(defaults, key):
                cfg[key] = type(getattr(defaults, key))(float(value))
        return cls(**cfg)


@dataclass(slots=True)
class Alert:
    """One anomaly bundle. ``p_value`` or ``arl`` (the calibrated in-control average run length)
    says how surprising it is; ``effect`` is in the metric's units (rate points, length ratio, PSI,
    AUC) and ``effect_floor`` is the practical floor it passed. Window bounds are interaction ids
    and epoch milliseconds. ``severity``: ``high`` when the effect is at least twice the floor."""

    detector: str
    statistic: str
    value: float
    threshold: float
    effect: float
    effect_floor: float
    group: dict[str, str]
    window_start_id: str
    window_end_id: str
    window_start_ms: int
    window_end_ms: int
    n_window: int
    n_reference: int
    p_value: float | None = None
    arl: float | None = None
    exemplars_current: list[str] = field(default_factory=list)
    exemplars_reference: list[str] = field(default_factory=list)
    top_features: list[dict[str, Any]] = field(default_factory=list)
    severity: str = "medium"
    direction: str = "up"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:4], "big")


_H_CACHE: dict[tuple[Any, ...], float] = {}


def calibrate_cusum_h(
    reference: np.ndarray,
    binary: bool,
    k: float,
    arl0: float,
    seed: int,
    horizon: int = 4000,
    sims: int = 400,
) -> float:
    """Decision threshold ``h`` (in reference standard deviations) of a two-sided CUSUM with
    allowance ``k`` such that the in-control average run length is ``arl0`` observations.

    Bootstrap from ``reference`` (resampled; Bernoulli with the Laplace-smoothed rate when
    ``binary``): ``sims`` in-control streams of ``horizon`` observations give the distribution of the
    maximum statistic M. For thresholds h where P(M > h) is between 0.05 and 0.9 the run length is
    about geometric, ARL(h) = -horizon / ln(1 - P(M > h)); log ARL is close to linear in h for a
    CUSUM (Siegmund 1985), so a least-squares line through those points is extrapolated to
    ``arl0``. Results for binary references are cached by (rate, k, arl0)."""
    n = len(reference)
    if binary:
        p = (float(reference.sum()) + 1.0) / (n + 2.0)
        key: tuple[Any, ...] = (round(p, 4), round(k, 4), arl0, horizon, sims)
        if key in _H_CACHE:
            return _H_CACHE[key]
        mu, sd = p, math.sqrt(p * (1 - p))
    else:
        mu, sd = float(reference.mean()), max(float(reference.std()), 1e-9)
    rng = np.random.default_rng(seed)
    hi = np.zeros(sims)
    lo = np.zeros(sims)
    peak = np.zeros(sims)
    block = 1000
    for start in range(0, horizon, block):
        size = min(block, horizon - start)
        if binary:
            draws = (rng.random((size, sims)) < p).astype(np.float64)
        else:
            draws = reference[rng.integers(0, n, size=(size, sims))]
        z = (draws - mu) / sd
        for row in z:
            hi = np.maximum(0.0, hi + row - k)
            lo = np.maximum(0.0, lo - row - k)
            np.maximum(peak, np.maximum(hi, lo), out=peak)
    grid = np.quantile(peak, np.linspace(0.1, 0.95, 18))
    hs, logs = [], []
    for h in np.unique(grid):
        tail = float((peak > h).mean())
        if 0.05 <= tail <= 0.9:
            hs.append(float(h))
            logs.append(math.log(-horizon / math.log(1.0 - tail)))
    if len(hs) >= 3 and np.ptp(hs) > 0:
        slope, intercept = np.polyfit(hs, logs, 1)
        h_star = (math.log(arl0) - intercept) / slope if slope > 0 else float(peak.max())
    else:
        h_star = float(peak.max())
    h_star = max(h_star, float(np.quantile(peak, 0.95)))
    if binary:
        _H_CACHE[key] = h_star
    return h_star


class CusumMonitor:
    """Two-sided CUSUM on one metric stream of one group; see the module docstring.

    ``kind`` is ``rate`` (0/1 observations, floor = ``Floors.rate_delta``) or ``log_length``
    (floor = log ``Floors.length_ratio``) or ``mean`` (floor given explicitly). The first
    ``reference_size`` observations are the reference (fixed baseline); with ``rolling=True`` the
    reference is re-estimated from the last ``reference_size`` observations every
    ``reference_size`` observations while no alert is open.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        floors: Floors,
        reference_size: int = 2000,
        floor: float | None = None,
        rolling: bool = False,
    ) -> None:
        self.name = name
        self.kind = kind
        self.floors = floors
        self.reference_size = reference_size
        self.rolling = rolling
        if floor is not None:
            self.floor = floor
        elif kind == "rate":
            self.floor = floors.rate_delta
        elif kind == "log_length":
            self.floor = math.log(floors.length_ratio)
        else:
            raise ValueError(f"monitor {name}: kind {kind!r} needs an explicit floor")
        self.ref: list[float] = []
        self.ref_ids: list[str] = []
        self.mu = 0.0
        self.sd = 1.0
        self.k = 0.0
        self.h = math.inf
        self.calibrated = False
        self.n = 0
        self.s_hi = 0.0
        self.s_lo = 0.0
        self.win_hi: list[float] = [0.0, 0.0]  # sum, count since S+ left zero
        self.win_lo: list[float] = [0.0, 0.0]
        self.start_hi: tuple[str, int] = ("", 0)
        self.start_lo: tuple[str, int] = ("", 0)
        self.recent_hi: deque[str] = deque(maxlen=10)
        self.recent_lo: deque[str] = deque(maxlen=10)
        self.alerts = 0
        self.min_window = 100
        self.n_ref = 0
        self.ref_exemplars: dict[str, list[str]] = {"up": [], "down": []}

    @property
    def binary(self) -> bool:
        return self.kind == "rate"

    def _calibrate(self, group_key: str) -> None:
        ref = np.asarray(self.ref, dtype=np.float64)
        if self.binary:
            p = (float(ref.sum()) + 1.0) / (len(ref) + 2.0)
            self.mu, self.sd = float(ref.mean()), math.sqrt(p * (1 - p))
        else:
            self.mu, self.sd = float(ref.mean()), max(float(ref.std()), 1e-6)
        self.k = self.floor / (2.0 * self.sd)
        self.h = calibrate_cusum_h(ref, self.binary, self.k, self.floors.arl0, _seed(group_key, self.name))
        self.calibrated = True
        self.n_ref = len(ref)
        self.ref_exemplars = {
            "up": [i for i, v in zip(self.ref_ids, self.ref, strict=False) if v > self.mu][-10:],
            "down": [i for i, v in zip(self.ref_ids, self.ref, strict=False) if v < self.mu][-10:],
        }
        if not self.rolling:
            self.ref, self.ref_ids = [], []
        self.n = 0
        self.s_hi = self.s_lo = 0.0
        self.win_hi = [0.0, 0.0]
        self.win_lo = [0.0, 0.0]

    def update(self, value: float, item_id: str, ts_ms: int, group: dict[str, str]) -> Alert | None:
        """Add one observation; returns an ``Alert`` when the CUSUM crosses ``h`` with at least
        ``Floors.min_sample`` observations since calibration and the mean of the change window
        (observations since the statistic last left zero) is at least ``floor`` from the reference
        mean, and a two-sample z-test of the change window against the reference sample has
        p < ``Floors.alpha``. The statistic restarts from zero after an alert."""
        if not self.calibrated:
            self.ref.append(float(value))
            self.ref_ids.append(item_id)
            if len(self.ref) >= self.reference_size:
                self._calibrate(_group_key(group))
            return None
        self.n += 1
        if value > self.mu:
            self.recent_hi.append(item_id)
        elif value < self.mu:
            self.recent_lo.append(item_id)
        z = (value - self.mu) / self.sd
        if self.s_hi == 0.0:
            self.win_hi = [0.0, 0.0]
            self.start_hi = (item_id, ts_ms)
        if self.s_lo == 0.0:
            self.win_lo = [0.0, 0.0]
            self.start_lo = (item_id, ts_ms)
        self.s_hi = max(0.0, self.s_hi + z - self.k)
        self.s_lo = max(0.0, self.s_lo - z - self.k)
        self.win_hi = [self.win_hi[0] + value, self.win_hi[1] + 1] if self.s_hi > 0 else [0.0, 0.0]
        self.win_lo = [self.win_lo[0] + value, self.win_lo[1] + 1] if self.s_lo > 0 else [0.0, 0.0]
        alert = None
        if self.n >= self.floors.min_sample:
            for direction, s, win, start in (
                ("up", self.s_hi, self.win_hi, self.start_hi),
                ("down", self.s_lo, self.win_lo, self.start_lo),
            ):
                if s <= self.h or win[1] < self.min_window:
                    continue
                effect = win[0] / win[1] - self.mu
                if abs(effect) < self.floor:
                    continue
                # The reference mean is itself an estimate: the change window must also differ from
                # the reference sample by a two-sample z-test at ``alpha``.
                se = self.sd * math.sqrt(1.0 / win[1] + 1.0 / max(self.n_ref, 1))
                p_two = float(2 * stats.norm.sf(abs(effect) / se))
                if p_two >= self.floors.alpha:
                    continue
                alert = self._alert(direction, s, effect, int(win[1]), start, item_id, ts_ms, group)
                alert.p_value = p_two
                self.s_hi = self.s_lo = 0.0
                self.alerts += 1
                break
        if self.rolling:
            self.ref = [*self.ref[-(self.reference_size - 1) :], float(value)]
            self.ref_ids = [*self.ref_ids[-(self.reference_size - 1) :], item_id]
            if alert is None and self.n >= self.reference_size and self.s_hi == self.s_lo == 0.0:
                self._calibrate(_group_key(group))
        return alert

    def _alert(
        self,
        direction: str,
        s: float,
        effect: float,
        n_win: int,
        start: tuple[str, int],
        end_id: str,
        end_ms: int,
        group: dict[str, str],
    ) -> Alert:
        # the last 10 observations on the side of the shift (above the reference mean for "up")
        cur = list(reversed(self.recent_hi if direction == "up" else self.recent_lo))
        ref = self.ref_exemplars.get(direction, [])[:10]
        shown_effect = math.exp(effect) if self.kind == "log_length" else effect
        shown_floor = math.exp(self.floor) if self.kind == "log_length" else self.floor
        big = abs(effect) >= 2 * self.floor
        return Alert(
            detector=self.name,
            statistic="cusum",
            value=round(s, 4),
            threshold=round(self.h, 4),
            effect=round(shown_effect, 4),
            effect_floor=round(shown_floor, 4),
            group=dict(group),
            window_start_id=start[0],
            window_end_id=end_id,
            window_start_ms=start[1],
            window_end_ms=end_ms,
            n_window=n_win,
            n_reference=self.n_ref,
            arl=self.floors.arl0,
            exemplars_current=cur,
            exemplars_reference=ref,
            severity="high" if big else "medium",
            direction=direction,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "floor": self.floor,
            "reference_size": self.reference_size,
            "rolling": self.rolling,
            "ref": self.ref if not self.calibrated or self.rolling else [],
            "ref_ids": self.ref_ids if not self.calibrated or self.rolling else [],
            "ref_exemplars": self.ref_exemplars,
            "mu": self.mu,
            "sd": self.sd,
            "k": self.k,
            "h": self.h if math.isfinite(self.h) else None,
            "calibrated": self.calibrated,
            "n_ref": self.n_ref,
            "n": self.n,
            "s_hi": self.s_hi,
            "s_lo": self.s_lo,
            "win_hi": self.win_hi,
            "win_lo": self.win_lo,
            "start_hi": list(self.start_hi),
            "start_lo": list(self.start_lo),
            "recent_hi": list(self.recent_hi),
            "recent_lo": list(self.recent_lo),
            "alerts": self.alerts,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], floors: Floors) -> CusumMonitor:
        m = cls(d["name"], d["kind"], floors, d["reference_size"], d["floor"], d["rolling"])
        m.ref = [float(v) for v in d["ref"]]
        m.ref_ids = list(d["ref_ids"])
        m.ref_exemplars = {k: list(v) for k, v in d["ref_exemplars"].items()}
        m.mu, m.sd, m.k = float(d["mu"]), float(d["sd"]), float(d["k"])
        m.h = math.inf if d["h"] is None else float(d["h"])
        m.calibrated = bool(d["calibrated"])
        m.n_ref = int(d["n_ref"])
        m.n = int(d["n"])
        m.s_hi, m.s_lo = float(d["s_hi"]), float(d["s_lo"])
        m.win_hi, m.win_lo = [float(x) for x in d["win_hi"]], [float(x) for x in d["win_lo"]]
        m.start_hi = (str(d["start_hi"][0]), int(d["start_hi"][1]))
        m.start_lo = (str(d["start_lo"][0]), int(d["start_lo"][1]))
        m.recent_hi = deque((str(i) for i in d["recent_hi"]), maxlen=10)
        m.recent_lo = deque((str(i) for i in d["recent_lo"]), maxlen=10)
        m.alerts = int(d["alerts"])
        return m


def _group_key(group: dict[str, str]) -> str:
    return "|".join(f"{k}={v}" for k, v in sorted(group.items()))


# ---- input drift -------------------------------------------------------------------------------------


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index sum((c - r) * ln(c / r)) over bins of proportions (``eps``
    added to empty bins). Source: Siddiqi, Credit Risk Scorecards (2006); >= 0.2 is a shift."""
    r = ref_counts / max(ref_counts.sum(), 1)
    c = cur_counts / max(cur_counts.sum(), 1)
    r = np.where(r == 0, eps, r)
    c = np.where(c == 0, eps, c)
    return float(np.sum((c - r) * np.log(c / r)))


@dataclass(slots=True)
class InputItem:
    """One request's input features: ``id``, epoch ms, prompt text (already redacted), categorical
    features (``topic_cluster``, ``tenant``, ``tool_use``, ``language``) and numeric ones
    (``prompt_log_chars``, ``turns``)."""

    id: str
    ts_ms: int
    text: str
    categorical: dict[str, str]
    numeric: dict[str, float]


class InputDrift:
    """Sliding-window input drift of one group against a fixed reference window.

    The first ``reference_size`` items form the reference; afterwards a window of the last
    ``window`` items is tested every ``check_every`` items. The domain-classifier null (AUC of the
    reference split against itself, ``null_splits`` times) is computed once at calibration.
    Texts are truncated to ``max_chars`` in the state.
    """

    def __init__(
        self,
        floors: Floors,
        reference_size: int = 1000,
        window: int = 300,
        check_every: int = 100,
        null_splits: int = 12,
        max_chars: int = 400,
    ) -> None:
        self.floors = floors
        self.reference_size = reference_size
        self.window = window
        self.check_every = check_every
        self.null_splits = null_splits
        self.max_chars = max_chars
        self.ref: list[InputItem] = []
        self.cur: deque[InputItem] = deque(maxlen=window)
        self.null_mu = 0.5
        self.null_sd = 0.05
        self.calibrated = False
        self.since_check = 0
        self.n = 0
        self.alerts = 0
        self.cooldown = 0
        self._ref_counts: sparse.csr_matrix | None = None
        self.last_auc = 0.5

    def _counts(self) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
        """Hashed counts of the reference and the window, cached in memory (not in the state)."""
        if self._ref_counts is None:
            self._ref_counts = hashed_counts([r.text for r in self.ref])
        return self._ref_counts, hashed_counts([c.text for c in self.cur])

    def update(self, item: InputItem, group: dict[str, str]) -> list[Alert]:
        """Add one item; returns the alerts of a check (empty most of the time). After an alert
        the window must be fully replaced before the same group alerts again."""
        item = InputItem(item.id, item.ts_ms, item.text[: self.max_chars], item.categorical, item.numeric)
        if not self.calibrated:
            self.ref.append(item)
            if len(self.ref) >= self.reference_size:
                self._calibrate(group)
            return []
        self.cur.append(item)
        self.n += 1
        self.since_check += 1
        self.cooldown = max(0, self.cooldown - 1)
        if len(self.cur) < self.window or self.since_check < self.check_every or self.cooldown > 0:
            return []
        if self.n < self.floors.min_sample:
            return []
        self.since_check = 0
        alerts = self.check(group)
        if alerts:
            self.alerts += len(alerts)
            self.cooldown = self.window
        return alerts

    def _calibrate(self, group: dict[str, str]) -> None:
        rng = np.random.default_rng(_seed(_group_key(group), "input"))
        counts = hashed_counts([r.text for r in self.ref])
        self._ref_counts = counts
        aucs = []
        w = min(self.window, counts.shape[0] // 3)
        for _ in range(self.null_splits):
            perm = rng.permutation(counts.shape[0])
            aucs.append(domain_auc(counts[perm[w:]], counts[perm[:w]], seed=int(rng.integers(1 << 30)))[0])
        self.null_mu = float(np.mean(aucs))
        self.null_sd = max(float(np.std(aucs, ddof=1)), 0.01)
        self.calibrated = True

    @property
    def auc_threshold(self) -> float:
        z = float(stats.norm.isf(self.floors.alpha))
        return max(self.null_mu + z * self.null_sd, self.floors.auc)

    def check(self, group: dict[str, str]) -> list[Alert]:
        """Run every test on the current window; return the alerts that pass all three gates:
        the domain classifier, then PSI per categorical feature, then Wasserstein + KS per
        numeric feature (features in name order)."""
        cur = list(self.cur)
        alerts: list[Alert] = []
        domain = self._check_domain(cur, group)
        if domain is not None:
            alerts.append(domain)
        for feat in sorted({k for r in self.ref for k in r.categorical}):
            found = self._check_categorical(feat, cur, group)
            if found is not None:
                alerts.append(found)
        for feat in sorted({k for r in self.ref for k in r.numeric}):
            found = self._check_numeric(feat, cur, group)
            if found is not None:
                alerts.append(found)
        return alerts

    def _check_domain(self, cur: list[InputItem], group: dict[str, str]) -> Alert | None:
        """The domain-classifier test (sets ``last_auc``): an alert when its AUC reaches the
        threshold, with the most window-like current and most reference-like exemplars."""
        ref_counts, cur_counts = self._counts()
        auc, scores = domain_auc(ref_counts, cur_counts, seed=_seed(_group_key(group)))
        self.last_auc = auc
        if auc < self.auc_threshold:
            return None
        z = (auc - self.null_mu) / self.null_sd
        a = self._alert(
            "input_domain_classifier",
            "roc_auc",
            auc,
            self.auc_threshold,
            auc,
            self.floors.auc,
            float(stats.norm.sf(z)),
            cur,
            group,
        )
        ref_scores, cur_scores = scores
        a.exemplars_current = [cur[i].id for i in np.argsort(-cur_scores)[:10]]
        a.exemplars_reference = [self.ref[i].id for i in np.argsort(ref_scores)[:10]]
        a.top_features = top_ngrams([r.text for r in self.ref], [c.text for c in cur])
        return a

    def _check_categorical(self, feat: str, cur: list[InputItem], group: dict[str, str]) -> Alert | None:
        """PSI of categorical feature ``feat`` with a chi-squared test: an alert when both pass."""
        ref_count = Counter(r.categorical.get(feat, "") for r in self.ref)
        cur_count = Counter(c.categorical.get(feat, "") for c in cur)
        cats = sorted(set(ref_count) | set(cur_count))
        rc = np.array([ref_count[v] for v in cats], float)
        cc = np.array([cur_count[v] for v in cats], float)
        if len(cats) < 2:
            return None
        value = psi(rc, cc)
        _, p, _, _ = stats.chi2_contingency(np.vstack([rc, cc]) + 0.5)
        if not (value >= self.floors.psi and p < self.floors.alpha):
            return None
        a = self._alert(
            f"input_{feat}", "psi", value, self.floors.psi, value, self.floors.psi, float(p), cur, group
        )
        share = cc / cc.sum() - rc / rc.sum()
        order = np.argsort(-np.abs(share))[:5]
        a.top_features = [{"value": cats[i], "share_change": round(float(share[i]), 4)} for i in order]
        grown = {cats[i] for i in order if share[i] > 0}
        a.exemplars_current = [c.id for c in cur if c.categorical.get(feat, "") in grown][:10]
        a.exemplars_reference = [r.id for r in self.ref if r.categorical.get(feat, "") not in grown][:10]
        return a

    def _check_numeric(self, feat: str, cur: list[InputItem], group: dict[str, str]) -> Alert | None:
        """Wasserstein distance (in reference SDs) of numeric feature ``feat`` with a KS test: an
        alert when both pass, with the direction of the shift."""
        rv = np.array([r.numeric.get(feat, 0.0) for r in self.ref])
        cv = np.array([c.numeric.get(feat, 0.0) for c in cur])
        sd = max(float(rv.std()), 1e-6)
        wd = float(stats.wasserstein_distance(rv, cv)) / sd
        p = float(stats.ks_2samp(rv, cv).pvalue)
        if not (wd >= self.floors.wasserstein_sd and p < self.floors.alpha):
            return None
        floor = self.floors.wasserstein_sd
        a = self._alert(f"input_{feat}", "ks", wd, floor, wd, floor, p, cur, group)
        up = float(cv.mean()) > float(rv.mean())
        a.direction = "up" if up else "down"
        a.exemplars_current = [cur[i].id for i in np.argsort(-cv if up else cv)[:10]]
        a.exemplars_reference = [self.ref[i].id for i in np.argsort(rv if up else -rv)[:10]]
        return a

    def _alert(
        self,
        detector: str,
        statistic: str,
        value: float,
        threshold: float,
        effect: float,
        floor: float,
        p: float,
        cur: Sequence[InputItem],
        group: dict[str, str],
    ) -> Alert:
        return Alert(
            detector=detector,
            statistic=statistic,
            value=round(value, 4),
            threshold=round(threshold, 4),
            effect=round(effect, 4),
            effect_floor=floor,
            group=dict(group),
            window_start_id=cur[0].id,
            window_end_id=cur[-1].id,
            window_start_ms=cur[0].ts_ms,
            window_end_ms=cur[-1].ts_ms,
            n_window=len(cur),
            n_reference=len(self.ref),
            p_value=p,
            severity="high" if effect >= 2 * floor else "medium",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_size": self.reference_size,
            "window": self.window,
            "check_every": self.check_every,
            "null_splits": self.null_splits,
            "max_chars": self.max_chars,
            "ref": [asdict(r) for r in self.ref],
            "cur": [asdict(c) for c in self.cur],
            "null_mu": self.null_mu,
            "null_sd": self.null_sd,
            "calibrated": self.calibrated,
            "since_check": self.since_check,
            "n": self.n,
            "alerts": self.alerts,
            "cooldown": self.cooldown,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], floors: Floors) -> InputDrift:
        m = cls(floors, d["reference_size"], d["window"], d["check_every"], d["null_splits"], d["max_chars"])
        m.ref = [InputItem(**r) for r in d["ref"]]
        m.cur = deque((InputItem(**c) for c in d["cur"]), maxlen=m.window)
        m.null_mu, m.null_sd = float(d["null_mu"]), float(d["null_sd"])
        m.calibrated = bool(d["calibrated"])
        m.since_check, m.n, m.alerts, m.cooldown = (
            int(d["since_check"]),
            int(d["n"]),
            int(d["alerts"]),
            int(d["cooldown"]),
        )
        return m


def hashed_counts(texts: Sequence[str]) -> sparse.csr_matrix:
    """Hashed word 1-2-gram counts of texts (the domain classifier's input)."""
    return sparse.csr_matrix(_INPUT_HASHER.transform(list(texts)))


def domain_auc(
    ref: Sequence[str] | sparse.csr_matrix, cur: Sequence[str] | sparse.csr_matrix, seed: int = 0
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """Out-of-fold ROC AUC of a classifier telling ``cur`` from ``ref`` (texts, or their
    ``hashed_counts``): TF-IDF of hashed word 1-2-grams, multinomial naive Bayes (alpha 0.1),
    2 stratified folds. 0.5 = no difference. Also returns the out-of-fold log-odds of "current" for
    the reference and the current items."""
    rc = sparse.csr_matrix(ref) if sparse.issparse(ref) else hashed_counts(ref)  # type: ignore[arg-type]
    cc = sparse.csr_matrix(cur) if sparse.issparse(cur) else hashed_counts(cur)  # type: ignore[arg-type]
    counts = sparse.vstack([rc, cc]).tocsr()
    n_ref = int(rc.shape[0])
    y: np.ndarray = np.concatenate([np.zeros(n_ref, dtype=int), np.ones(int(cc.shape[0]), dtype=int)])
    x = tfidf(counts, fit_idf(counts))
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), dtype=int)
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        fold[rng.permutation(idx)[: len(idx) // 2]] = 1
    pred = np.zeros(len(y))
    for f in (0, 1):
        tr, te = fold != f, fold == f
        nb = MultinomialNB(alpha=0.1).fit(x[tr], y[tr])
        logp = nb.predict_log_proba(x[te])
        pred[te] = logp[:, 1] - logp[:, 0]
    auc = float(roc_auc_score(y, pred))
    return auc, (pred[:n_ref], pred[n_ref:])


def top_ngrams(ref: Sequence[str], cur: Sequence[str], n: int = 10) -> list[dict[str, Any]]:
    """The word 1-2-grams that most distinguish ``cur`` from ``ref`` (largest and smallest
    logistic-regression coefficients on TF-IDF with min_df=3), ``side`` = current | reference."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=3, sublinear_tf=True, stop_words="english")
    try:
        x = vec.fit_transform(list(ref) + list(cur))
    except ValueError:
        return []
    y = np.array([0] * len(ref) + [1] * len(cur))
    coef = LogisticRegression(C=1.0, max_iter=500, class_weight="balanced").fit(x, y).coef_.ravel()
    names = vec.get_feature_names_out()
    order = np.argsort(coef)
    out = [
        {"ngram": str(names[i]), "weight": round(float(coef[i]), 3), "side": "current"}
        for i in order[::-1][:n]
    ]
    out += [
        {"ngram": str(names[i]), "weight": round(float(coef[i]), 3), "side": "reference"} for i in order[:n]
    ]
    return out
