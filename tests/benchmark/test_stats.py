"""The report's statistics against hand-computed values: t intervals, paired tests, Holm's correction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.stats import (
    family_size,
    holm,
    mde,
    mean_ci,
    paired_delta,
    paired_t,
    replicates_needed,
    sd_interval,
    tost,
    verdict,
)


def test_mean_ci_by_formula() -> None:
    # values 1, 2, 3: mean 2, sample std 1, t(0.975, df=2) = 4.302652729911275
    mean, std, lo, hi = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)
    assert mean == 2.0 and std == 1.0
    assert lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert mean_ci([0.7]) == (0.7, 0.0, 0.7, 0.7)


def test_paired_t_test_and_delta_interval_by_formula() -> None:
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t = 0.2 / (0.1/sqrt 3) = 3.4641; two-sided p, df 2
    from scipy import stats

    delta, p, lo, hi = paired_delta({0: 0.6, 1: 0.7, 2: 0.8}, {0: 0.5, 1: 0.5, 2: 0.5})
    t = 0.2 / (0.1 / math.sqrt(3))
    assert delta == pytest.approx(0.2)
    assert p == pytest.approx(2 * stats.t.sf(t, df=2))
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert (lo, hi) == pytest.approx((0.2 - half, 0.2 + half))
    assert math.isnan(paired_delta({0: 0.6}, {0: 0.5})[1])


def test_holm_worked_example() -> None:
    # m = 4. Sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # NaN entries are not part of the family (m = 2 here): 0.01 x 2 = 0.02; 0.6 x 1 = 0.6
    adj = holm([math.nan, 0.01, 0.6])
    assert math.isnan(adj[0]) and adj[1:] == pytest.approx([0.02, 0.6])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # 0.6 x 2 = 1.2 is capped at 1
    assert family_size([math.nan, 0.01, 0.6]) == 2
    # a single test is not adjusted
    assert holm([0.04]) == [0.04]


def test_holm_never_below_raw_and_monotone_in_the_raw_order() -> None:
    ps = [0.001, 0.2, 0.04, 0.013, 0.5, 0.02]
    adj = holm(ps)
    assert all(a >= p for a, p in zip(adj, ps))
    order = sorted(range(len(ps)), key=ps.__getitem__)
    assert [adj[i] for i in order] == sorted(adj)


def test_constant_nonzero_difference_keeps_p_zero_and_stays_in_the_family() -> None:
    # 0.6-0.5, 0.7-0.6, 0.8-0.7 are 0.1 up to float round-off: sd 0, t = +inf -> p = 0 (issue 20 point 1)
    delta, p, lo, hi = paired_delta({0: 0.6, 1: 0.7, 2: 0.8}, {0: 0.5, 1: 0.6, 2: 0.7})
    assert delta == pytest.approx(0.1) and p == 0.0 and (lo, hi) == pytest.approx((0.1, 0.1))
    r = paired_t([-0.003, -0.003, -0.003])
    assert r.p == 0.0 and r.t == -math.inf and r.p_source == "constant" and r.sd == 0.0
    # a zero constant: t = 0/0, no evidence of a difference -> p = 1
    zero = paired_t([0.0, 0.0, 0.0])
    assert zero.p == 1.0 and zero.t == 0.0 and zero.p_source == "constant"
    # the family keeps its size: 3 tests, one constant; Holm multiplies the smallest by m = 3
    ps = [p, paired_delta({0: 0.6, 1: 0.7, 2: 0.8}, {0: 0.5, 1: 0.5, 2: 0.5})[1], zero.p]
    assert family_size(ps) == 3
    assert holm(ps) == pytest.approx([0.0, 2 * ps[1], 1.0])


def test_paired_t_record_matches_scipy_and_marks_untestable() -> None:
    from scipy import stats

    d = [0.004, -0.001, 0.006, 0.002]
    r = paired_t(d)
    ref = stats.ttest_1samp(d, 0.0)
    assert r.n == 4 and r.t == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)
    assert r.p_source == "t" and r.sd == pytest.approx(float(np.std(d, ddof=1)))
    one = paired_t([0.01])
    assert one.p_source == "untestable" and math.isnan(one.p) and one.delta == 0.01


def test_holm_can_count_untestable_tests_in_the_family() -> None:
    # m = 3 with the NaN counted (as p = 1, sorted last): 0.01 x 3 = 0.03; 0.02 x 2 = 0.04
    adj = holm([0.01, math.nan, 0.02], count_untestable=True)
    assert adj[0] == pytest.approx(0.03) and adj[2] == pytest.approx(0.04) and math.isnan(adj[1])


def test_tost_worked_example() -> None:
    # d = 0.001, 0.0005, 0.0015, 0.001: mean 0.001, sd sqrt(5e-7 / 3), se = sd / 2, df 3
    from scipy import stats

    d = [0.001, 0.0005, 0.0015, 0.001]
    se = math.sqrt(5e-7 / 3) / 2
    r = tost(d, margin=0.002)
    assert r.p_lower == pytest.approx(stats.t.sf((0.001 + 0.002) / se, 3))  # t = 14.70
    assert r.p_upper == pytest.approx(stats.t.cdf((0.001 - 0.002) / se, 3))  # t = -4.90, p = 0.0081
    assert r.p == r.p_upper and r.p < 0.01 and r.equivalent
    half = stats.t.ppf(0.95, 3) * se  # the 90% interval: 0.001 +- 0.00048
    assert (r.ci_low, r.ci_high) == pytest.approx((0.001 - half, 0.001 + half))
    # a margin of 0.0012 is inside the 90% interval's upper end (0.00148): not equivalent, p = 0.20
    narrow = tost(d, margin=0.0012)
    assert not narrow.equivalent and narrow.p == pytest.approx(stats.t.cdf((0.001 - 0.0012) / se, 3))
    assert narrow.ci_high > 0.0012


def test_tost_equivalent_exactly_when_the_interval_is_inside_the_margin() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = rng.normal(rng.normal(0, 0.002), rng.uniform(0.0002, 0.003), size=int(rng.integers(2, 8)))
        r = tost(d, 0.002)
        assert r.equivalent == (r.ci_low > -0.002 and r.ci_high < 0.002)
    assert tost([0.001] * 3, 0.002).equivalent and not tost([0.003] * 3, 0.002).equivalent
    assert not tost([0.001], 0.002).equivalent


def test_mde_closed_form_and_monotone() -> None:
    from scipy import stats

    # sd 0.002 over n = 3: (t_0.975,2 + t_0.8,2) 0.002 / sqrt 3 = (4.3027 + 1.0607) 0.002 / 1.7321 = 0.00619
    assert mde(0.002, 3) == pytest.approx((stats.t.ppf(0.975, 2) + stats.t.ppf(0.8, 2)) * 0.002 / math.sqrt(3))
    assert mde(0.002, 3) == pytest.approx(0.006193, abs=1e-6)
    ms = [mde(0.002, n) for n in range(2, 40)]
    assert all(a > b for a, b in zip(ms, ms[1:]))  # more replicates -> smaller MDE
    assert mde(0.002, 5, alpha=0.05 / 24) > mde(0.002, 5)  # Holm's first step asks more
    assert mde(0.002, 5, power=0.9) > mde(0.002, 5)
    assert mde(0.004, 5) == pytest.approx(2 * mde(0.002, 5))
    assert mde(0.002, 1) == math.inf


def test_mde_has_about_the_stated_power() -> None:
    # exact power of the two-sided paired t at the MDE (noncentral t) is close to 80% for moderate n
    from scipy import stats

    n, sd = 20, 0.002
    crit = stats.t.ppf(0.975, n - 1)
    nc = mde(sd, n) / (sd / math.sqrt(n))
    power = stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)
    assert power == pytest.approx(0.8, abs=0.01)


def test_replicates_needed_is_the_smallest_n_reaching_the_effect() -> None:
    for sd, e in ((0.0027, 0.005), (0.0009, 0.005), (0.0105, 0.01), (0.002, 0.0005)):
        n = replicates_needed(sd, e)
        assert n is not None and mde(sd, n) <= e and (n == 2 or mde(sd, n - 1) > e)
    assert replicates_needed(0.0027, 0.005) == 5  # (2.776 + 0.941) 0.0027 / sqrt 5 = 0.0045; n = 4: 0.0056
    assert replicates_needed(0.05, 0.001) is None  # (1.96 + 0.84)^2 (0.05 / 0.001)^2 = 19,600: over the cap
    assert replicates_needed(0.05, 0.001, cap=100_000) > 1000
    assert replicates_needed(0.001, 0.005, alpha=0.05 / 24) >= replicates_needed(0.001, 0.005)
    assert replicates_needed(math.nan, 0.005) is None


def test_sd_interval_chi_square() -> None:
    # df = 2: chi2 quantiles 0.0506 and 7.378 -> 0.52 sd .. 6.29 sd (statistics.md: "about 0.5 to 6")
    lo, hi = sd_interval(1.0, 3)
    assert lo == pytest.approx(0.5206, abs=1e-3) and hi == pytest.approx(6.2847, abs=1e-3)


def test_verdicts() -> None:
    assert verdict(0.001, 0.004, 0.01, False) == "gain"
    assert verdict(-0.004, -0.001, 0.01, False) == "loss"
    assert verdict(0.001, 0.004, 0.2, False) == "inconclusive"  # interval above 0 but not surviving Holm
    assert verdict(-0.001, 0.001, 0.9, True) == "equivalent"
    assert verdict(-0.001, 0.003, 0.3, False) == "inconclusive"
    assert verdict(0.0005, 0.001, 0.001, True) == "gain"  # significant and within the margin: reported as gain
    assert verdict(math.nan, math.nan, math.nan, False) == "inconclusive"
