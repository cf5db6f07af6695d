"""Always-valid (sequential) tests and confidence bounds for a difference of means, pure.

Method: the mixture sequential probability ratio test (mSPRT) of Johari, Koomen, Pekelis & Walsh,
"Peeking at A/B tests: why it matters, and what to do about it" (KDD 2017) and Johari, Pekelis &
Walsh, "Always valid inference" (Operations Research 2022), in its normal approximation: the
estimate ``d`` of a difference of means has variance ``v`` (the sum of the arms' variances of the
mean), and the likelihood ratio of a shift ``theta`` against 0 is mixed over a prior on ``theta``.

* Two-sided (``log_mixture_lr``), prior N(0, tau^2) (what ``detectors.canary`` uses)::

      Lambda = sqrt(v / (v + tau^2)) * exp(d^2 tau^2 / (2 v (v + tau^2)))

* One-sided (``log_one_sided_lr``), H0: theta <= 0 against theta > 0, prior the half-normal
  2 N(0, tau^2) on theta > 0; integrating gives the closed form::

      Lambda+ = 2 Phi(d tau / sqrt(v (v + tau^2))) * Lambda

  Every component ratio with theta > 0 is a non-negative supermartingale under any theta <= 0,
  so their mixture is too, and Ville's inequality bounds P(sup_n Lambda+_n >= 1/alpha) by alpha
  however often the test is looked at (the one-sided form of the mixture in Robbins 1970,
  "Statistical methods related to the law of the iterated logarithm").

* The matching one-sided confidence bound: ``Lambda+(d - theta0)`` grows with ``d - theta0``, so
  ``{theta0 : Lambda+(d - theta0) < 1/alpha}`` is the half line ``theta0 > d - w`` with ``w`` the
  root of ``log Lambda+(w) = log(1/alpha)`` (``one_sided_halfwidth``; it depends on ``v``, ``tau``
  and ``alpha`` only). ``d - w`` is an always-valid lower confidence bound at level ``1 - alpha``
  and ``d + w`` the mirrored upper bound: the test "theta <= tol" rejects exactly when the lower
  bound exceeds ``tol`` (the interval lies wholly on the bad side, as LaunchDarkly's guarded
  rollouts state their regression rule).

The normal approximation with plug-in variances is the one Johari et al. use for A/B tests; it is
accurate once each arm has a few dozen observations (callers enforce a floor).
"""

from __future__ import annotations

import math

from scipy import optimize, special


def mean_of(n: int, s: float) -> float:
    """The mean of ``n`` observations summing to ``s`` (0 when ``n`` is 0)."""
    return s / n if n else 0.0


def var_of(n: int, s: float, ss: float) -> float:
    """Sample variance (n - 1 denominator) from count, sum and sum of squares; 0 below two
    observations, never negative (rounding)."""
    if n < 2:
        return 0.0
    return max((ss - s * s / n) / (n - 1), 0.0)


def log_mixture_lr(d: float, v: float, tau2: float) -> float:
    """log Lambda of the two-sided normal-mixture SPRT (module docstring). ``v`` > 0 is the
    variance of ``d``, ``tau2`` > 0 the mixing variance; both on ``d``'s scale squared."""
    return 0.5 * math.log(v / (v + tau2)) + d * d * tau2 / (2.0 * v * (v + tau2))


def log_one_sided_lr(d: float, v: float, tau2: float) -> float:
    """log Lambda+ of the one-sided mSPRT of H0 ``theta <= 0`` (module docstring): grows with ``d``;
    ``exp(-log_one_sided_lr)`` capped at 1 is the always-valid one-sided p-value."""
    z = d * math.sqrt(tau2) / math.sqrt(v * (v + tau2))
    return math.log(2.0) + log_mixture_lr(d, v, tau2) + float(special.log_ndtr(z))


def one_sided_halfwidth(v: float, tau2: float, alpha: float) -> float:
    """``w`` with ``log_one_sided_lr(w, v, tau2) = log(1 / alpha)``: the distance from the estimate
    to its always-valid one-sided confidence bound at level ``1 - alpha`` (same units as ``d``).
    Raises ``ValueError`` unless ``v`` > 0, ``tau2`` > 0 and 0 < ``alpha`` < 1."""
    if not (v > 0 and tau2 > 0 and 0 < alpha < 1):
        raise ValueError(f"need v > 0, tau2 > 0, 0 < alpha < 1 (got {v}, {tau2}, {alpha})")
    target = math.log(1.0 / alpha)
    hi = math.sqrt(v)
    while log_one_sided_lr(hi, v, tau2) < target:
        hi *= 2.0
    root = optimize.brentq(lambda w: log_one_sided_lr(w, v, tau2) - target, 0.0, hi, xtol=1e-12)
    return float(root)


def log_split_bayes_factor(canary: int, total: int, share: float, concentration: float = 10.0) -> float:
    """log Bayes factor of "the canary's share of assignments is not ``share``" against "it is":
    a Beta(c * share, c * (1 - share)) mixture over the share (c = ``concentration``) against the
    configured share, on ``canary`` of ``total`` assignments. Under the configured split it is a
    non-negative martingale, so P(ever >= log(1/alpha)) <= alpha however often it is looked at:
    the two-arm case of the sequential sample-ratio-mismatch test of Lindon & Malek, "Anytime-valid
    inference for multinomial count data" (NeurIPS 2022). Raises ``ValueError`` unless
    0 < share < 1 and 0 <= canary <= total."""
    if not (0 < share < 1 and 0 <= canary <= total):
        raise ValueError(f"need 0 < share < 1 and 0 <= canary <= total (got {share}, {canary}, {total})")
    a, b = concentration * share, concentration * (1 - share)
    mixture = special.betaln(canary + a, total - canary + b) - special.betaln(a, b)
    return float(mixture - canary * math.log(share) - (total - canary) * math.log1p(-share))
