"""Intervals of a mean and paired comparisons of per-member numbers, with scipy.stats (no jax).

A sweep's comparisons are paired: members that differ only in the compared setting share their seed (and
fold), hence initialisation, minibatch order and dropout draws (common random numbers), so the
difference between two values is measured member pair by member pair and the seed-to-seed spread, which
the two share, cancels.

Rules chosen here, and why:

- **Interval of a mean**: Student's t below :data:`BOOTSTRAP_MIN_N` values, and also above it unless the
  values are skewed (``|skewness| >= SKEW_LIMIT``), where scipy's BCa bootstrap is used. Not a bootstrap
  for small counts: it resamples only the few values seen and comes out too narrow. Simulated here (300
  samples a cell, 95 % nominal): normal n=5, t 97 % vs BCa 88 %; lognormal n=5, t 87 % vs BCa 77 %;
  lognormal n=20, t 90 % vs BCa 90 %.
- **k-fold results** are not independent: the folds' training sets overlap. With ``folds=K`` the variance
  of a mean (or mean difference) over J fold estimates is Nadeau & Bengio's corrected
  ``s² (1/J + 1/(K-1))`` (``1/(K-1)`` = test share / training share of a fold), as in Bouckaert & Frank's
  corrected repeated k-fold test, with J-1 degrees of freedom. It is a heuristic: it assumes a
  correlation of ``1/K`` between fold estimates, and the fold models' test scores, which share one test
  set, may be more correlated still.
- **Multiple comparisons**: Holm's step-down adjustment (scipy has Bonferroni-free FDR control only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as st

LEVEL = 0.95
BOOTSTRAP_MIN_N = 20   # below this many values a bootstrap interval under-covers (see the module notes)
SKEW_LIMIT = 1.0       # |sample skewness| from which a t interval's symmetry is a poor guess


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval; `method` says how it was made (for captions and tables)."""

    mean: float
    low: float
    high: float
    n: int
    method: str

    @property
    def half_width(self) -> float:
        """The larger distance from the mean to an end (an interval may be asymmetric)."""
        return max(self.mean - self.low, self.high - self.mean)


@dataclass(frozen=True)
class Paired:
    """A paired difference ``a - b`` over `n` pairs: mean, interval, two-sided p-value, spread of the
    differences (sample sd, ddof=1)."""

    n: int
    diff: float
    low: float
    high: float
    p: float
    sd: float


def finite(values: Sequence[float]) -> np.ndarray:
    """The finite values (diverged members record NaN or None: they are counted out, not averaged)."""
    v = np.asarray([math.nan if x is None else x for x in values], dtype=float)
    return v[np.isfinite(v)]


def mean_sd(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count of the finite values."""
    v = finite(values)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def fold_factor(n: int, folds: int = 0) -> float:
    """What multiplies the sample variance to give the variance of a mean of `n` estimates: ``1/n``, or
    Nadeau-Bengio's ``1/n + 1/(folds-1)`` for estimates from `folds`-fold cross-validation."""
    return 1.0 / n + (1.0 / (folds - 1) if folds >= 2 else 0.0)


def t_interval(mean: float, sd: float, n: int, level: float = LEVEL, folds: int = 0) -> tuple[float, float]:
    """The t interval of a mean from its summary (sample sd, count); NaN ends for fewer than two."""
    if n < 2 or not math.isfinite(sd):
        return math.nan, math.nan
    if sd == 0.0:   # identical values: scipy would return NaN for a zero scale
        return mean, mean
    return tuple(float(x) for x in st.t.interval(level, n - 1, loc=mean,
                                                 scale=sd * math.sqrt(fold_factor(n, folds))))


def _method(folds: int) -> str:
    return f"t, Nadeau-Bengio corrected for {folds} folds" if folds >= 2 else "t"


def mean_interval(values: Sequence[float], level: float = LEVEL, folds: int = 0, seed: int = 0) -> Interval:
    """The `level` confidence interval of the mean of the finite `values` (see the module notes for the
    rule between t and bootstrap, and for `folds`). One value: NaN ends, method ``"one value"``."""
    v = finite(values)
    mean, sd, n = mean_sd(v)
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, "one value" if n else "no values")
    if folds < 2 and n >= BOOTSTRAP_MIN_N and sd > 0 and abs(st.skew(v, bias=False)) >= SKEW_LIMIT:
        # Seeded: the same run gives the same interval every time it is summarised.
        ci = st.bootstrap((v,), np.mean, confidence_level=level, method="BCa", n_resamples=9999,
                          random_state=np.random.default_rng(seed)).confidence_interval
        return Interval(mean, float(ci.low), float(ci.high), n, "bootstrap (BCa)")
    low, high = t_interval(mean, sd, n, level, folds)
    return Interval(mean, low, high, n, _method(folds))


def paired(a: Sequence[float], b: Sequence[float], level: float = LEVEL, folds: int = 0) -> Paired:
    """The paired difference ``a - b`` (pair i is ``a[i], b[i]``; pairs with a non-finite side are
    dropped): scipy's ``ttest_rel`` and its interval, or with `folds` the Nadeau-Bengio corrected t."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = a - b
    diff, sd, n = mean_sd(d)
    if n < 2:
        return Paired(n, diff, math.nan, math.nan, math.nan, math.nan)
    if sd == 0.0:
        # Every pair differs by the same amount (often 0: the two values trained identically); a t test
        # is undefined, and the data leave no doubt either way.
        return Paired(n, diff, diff, diff, 1.0 if diff == 0.0 else 0.0, 0.0)
    if folds >= 2:
        # scipy has no corrected resampled t test: the statistic by hand, the distribution from scipy.
        tstat = diff / (sd * math.sqrt(fold_factor(n, folds)))
        low, high = t_interval(diff, sd, n, level, folds)
        return Paired(n, diff, low, high, float(2.0 * st.t.sf(abs(tstat), n - 1)), sd)
    res = st.ttest_rel(a, b)
    ci = res.confidence_interval(level)
    return Paired(n, diff, float(ci.low), float(ci.high), float(res.pvalue), sd)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count as a comparison).

    scipy.stats offers Benjamini-Hochberg/Yekutieli (``false_discovery_control``) but no Holm, and
    statsmodels is not a dependency; these few lines are Holm (1979): the i-th smallest of m p-values is
    multiplied by m - i + 1, then made monotone (running maximum) and capped at 1.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m = order.size
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def power(n: int, diff: float, sd: float, alpha: float = 1 - LEVEL, folds: int = 0) -> float:
    """Power of the two-sided paired t test (size `alpha`) to detect a true mean difference `diff` over
    `n` pairs whose differences spread with sd `sd` (noncentral t; with `folds`, the corrected variance)."""
    if n < 2:
        return 0.0
    df = n - 1
    nc = abs(diff) / (sd * math.sqrt(fold_factor(n, folds)))
    crit = st.t.ppf(1 - alpha / 2, df)
    return float(st.nct.sf(crit, df, nc) + st.nct.cdf(-crit, df, nc))


def seeds_needed(diff: float, sd: float, alpha: float = 1 - LEVEL, target: float = 0.8, folds: int = 0,
                 limit: int = 10_000) -> int | None:
    """The fewest seeds for which a paired comparison detects `diff` with probability `target`, given the
    spread `sd` of paired differences seen in a run (one difference per seed, or per seed and fold with
    `folds`). None when no count up to `limit` does: with folds the corrected variance never falls below
    ``sd²/(folds-1)``, so more seeds cannot always help."""
    if not (sd > 0 and math.isfinite(sd)):
        return 2 if diff != 0 else None   # no spread: any two pairs show a non-zero difference
    per_seed = max(folds, 1)
    lo, hi = 0, 1   # invariant: lo seeds fall short, hi seeds reach the target
    while power(hi * per_seed, diff, sd, alpha, folds) < target:   # doubling, then bisection
        lo, hi = hi, hi * 2
        if hi > limit:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power(mid * per_seed, diff, sd, alpha, folds) >= target else (mid, hi)
    return hi
