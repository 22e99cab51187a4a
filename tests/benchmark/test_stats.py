"""The report's statistics against hand-computed values: t intervals, paired tests, Holm's correction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.stats import family_size, holm, mean_ci, paired_delta, paired_t


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
