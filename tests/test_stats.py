"""jaxmlp.stats against scipy and hand computations: intervals, paired tests, Holm, power (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from jaxmlp import stats


def test_t_interval_of_a_mean_by_hand_and_missing_values_counted_out():
    values = [80.0, 82.0, 84.0, math.nan, None]
    ci = stats.mean_interval(values)
    half = st.t.ppf(0.975, 2) * 2.0 / math.sqrt(3)          # sd of 80, 82, 84 is 2
    assert (ci.mean, ci.n, ci.method) == (82.0, 3, "t")
    assert (ci.low, ci.high) == (pytest.approx(82.0 - half), pytest.approx(82.0 + half))
    one = stats.mean_interval([5.0])
    assert one.n == 1 and math.isnan(one.low) and one.method == "one value"
    same = stats.mean_interval([3.0, 3.0, 3.0])
    assert (same.low, same.high) == (3.0, 3.0)
    assert stats.mean_sd([1.0, 3.0, math.nan]) == (2.0, pytest.approx(math.sqrt(2.0)), 2)


def test_bootstrap_only_for_many_skewed_values():
    skewed = np.random.default_rng(0).lognormal(0.0, 1.0, 40)
    assert abs(st.skew(skewed, bias=False)) > stats.SKEW_LIMIT
    ci = stats.mean_interval(skewed)
    assert ci.method == "bootstrap (BCa)" and ci.low < ci.mean < ci.high
    assert ci.high - ci.mean > ci.mean - ci.low            # asymmetric, as the data are
    assert stats.mean_interval(skewed) == ci                # seeded: the same run, the same interval
    assert stats.mean_interval(skewed[:10]).method == "t"   # few values: t (a bootstrap under-covers)
    assert stats.mean_interval(np.random.default_rng(1).normal(size=40)).method == "t"


def test_folds_widen_the_interval_by_the_nadeau_bengio_factor():
    values = [90.0, 91.0, 89.5, 90.5, 92.0]
    ci = stats.mean_interval(values, folds=5)
    sd = np.std(values, ddof=1)
    half = st.t.ppf(0.975, 4) * sd * math.sqrt(1 / 5 + 1 / 4)
    assert ci.high - ci.mean == pytest.approx(half)
    assert "Nadeau-Bengio" in ci.method
    assert ci.half_width > stats.mean_interval(values).half_width


def test_paired_difference_is_scipys_ttest_rel_and_covers_a_known_effect():
    rng = np.random.default_rng(3)
    seed_effect = rng.normal(0.0, 10.0, 8)                 # large, shared by both values: it cancels
    a = 80.0 + seed_effect + rng.normal(0.0, 1.0, 8)
    b = 77.0 + seed_effect + rng.normal(0.0, 1.0, 8)       # 3 points worse
    d = stats.paired(a, b)
    ref = st.ttest_rel(a, b)
    assert d.p == pytest.approx(ref.pvalue) and d.p < 0.01
    assert (d.low, d.high) == (pytest.approx(ref.confidence_interval().low),
                               pytest.approx(ref.confidence_interval().high))
    assert d.low < 3.0 < d.high and d.n == 8
    # Unpaired, the seed spread would hide the same difference.
    assert st.ttest_ind(a, b).pvalue > 0.3


def test_intervals_cover_and_the_null_is_rarely_significant_over_many_runs():
    rng = np.random.default_rng(7)
    covered = false_alarms = 0
    for _ in range(400):
        shared = rng.normal(0.0, 5.0, 5)
        effect = stats.paired(70 + shared + rng.normal(0, 1, 5) + 2.0, 70 + shared + rng.normal(0, 1, 5))
        null = stats.paired(70 + shared + rng.normal(0, 1, 5), 70 + shared + rng.normal(0, 1, 5))
        covered += effect.low <= 2.0 <= effect.high
        false_alarms += null.p < 0.05
    assert 0.92 <= covered / 400 <= 0.98
    assert false_alarms / 400 <= 0.08


def test_paired_drops_incomplete_pairs_and_handles_constant_differences():
    d = stats.paired([1.0, 2.0, math.nan, 4.0], [0.0, 1.0, 5.0, 3.0])
    assert (d.n, d.diff, d.p, d.low, d.high) == (3, 1.0, 0.0, 1.0, 1.0)
    assert stats.paired([1.0, 2.0], [1.0, 2.0]).p == 1.0
    assert math.isnan(stats.paired([1.0], [2.0]).p)


def test_corrected_paired_test_with_folds_by_hand():
    a, b = np.array([0.0, 1.0, 2.0, 3.0, 4.0]) + 1.0, np.array([0.0, 1.2, 1.8, 3.1, 4.0])
    d = a - b
    t = d.mean() / (d.std(ddof=1) * math.sqrt(1 / 5 + 1 / 4))
    got = stats.paired(a, b, folds=5)
    assert got.p == pytest.approx(2 * st.t.sf(abs(t), 4))
    assert got.p > stats.paired(a, b).p                     # the correction is conservative


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 -> running max 0.06
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02, math.nan])
    assert stats.holm([0.5, 0.6])[1] == 1.0 and stats.holm([]).size == 0


def test_power_and_seeds_needed_match_the_known_paired_t_sizes():
    # Paired t, two-sided α = 0.05, power 0.8: effect size 1 needs 10 pairs, 0.5 needs 34 (G*Power).
    assert stats.seeds_needed(1.0, 1.0) == 10
    assert stats.seeds_needed(2.0, 4.0) == 34
    assert stats.power(10, 1.0, 1.0) >= 0.8 > stats.power(9, 1.0, 1.0)
    # A stricter α (Holm's first step over 21 comparisons) needs more.
    assert stats.seeds_needed(1.0, 1.0, alpha=0.05 / 21) > 10
    # With 5 folds the corrected variance never falls below sd²/4: a small effect is out of reach.
    assert stats.seeds_needed(0.5, 2.0, folds=5) is None
    assert stats.seeds_needed(3.0, 1.0, folds=5) == 1
