"""The report's statistics against hand-computed values: t intervals, paired tests, Holm's correction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.core.errors import DataError
from benchmark.report.stats import (
    ScoredRows,
    family_size,
    hierarchical_bootstrap,
    holm,
    mde,
    mean_ci,
    paired_delta,
    paired_t,
    paired_units,
    replicates_needed,
    sd_interval,
    tost,
    unit_values,
    verdict,
    weighted_auc,
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


# ---- weighted AUC and the hierarchical bootstrap ---------------------------------------------------------


def _pairwise_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Slow reference: the share of (positive, negative) pairs ordered right, ties one half."""
    pos, neg = p[y == 1], p[y == 0]
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 40), st.integers(0, 2**31 - 1), st.booleans())
def test_weighted_auc_equals_the_auc_of_repeated_rows(n: int, seed: int, ties: bool) -> None:
    from benchmark.cells.metrics import auc

    rng = np.random.default_rng(seed)
    y = np.r_[0, 1, rng.integers(0, 2, n)].astype(float)  # both classes present
    p = rng.integers(0, 4, y.size).astype(float) if ties else rng.normal(size=y.size)
    w = rng.integers(0, 4, size=(3, y.size))
    w[:, :2] = 1  # keep a row of each class
    got = weighted_auc(y, p, w)
    for k in range(3):
        yr, pr = np.repeat(y, w[k]), np.repeat(p, w[k])
        assert got[k] == pytest.approx(_pairwise_auc(yr, pr), abs=1e-12)
        assert got[k] == pytest.approx(auc(yr, pr), abs=1e-12)
    assert weighted_auc(y, p, np.ones(y.size)) == pytest.approx(_pairwise_auc(y, p), abs=1e-12)
    assert math.isnan(weighted_auc(np.array([1.0, 1.0]), np.array([0.1, 0.2]), np.ones(2)))


def _replicate(rng: np.random.Generator, n_users: int, rows_per_user: int, effect: float,
               n_items: int = 200) -> tuple[ScoredRows, ScoredRows]:
    """Users with rows_per_user rows each; the baseline scores y + N(0, 1); the variant adds `effect` to the
    positives, so its AUC is higher by an amount that grows with effect."""
    n = n_users * rows_per_user
    user = np.repeat(np.arange(n_users), rows_per_user)
    item = rng.integers(0, n_items, n)
    y = (rng.random(n) < 0.4).astype(float)
    base = y + rng.normal(size=n)
    return ScoredRows(user, item, y, base + effect * y), ScoredRows(user, item, y, base)


def test_bootstrap_sd_is_the_between_replicate_sd_when_within_sampling_is_small() -> None:
    """Var(D*) = (population variance of the replicate deltas + mean within-replicate variance) / R, for a mean
    of R replicates drawn with replacement. Here the replicates differ by ~0.02 steps and the within part is
    under 1%: resampling rows (or users) without the replicates would give an sd about 10x too small."""
    from benchmark.cells.metrics import auc

    rng = np.random.default_rng(1)
    reps = [_replicate(rng, 1000, 4, e) for e in (0.0, 0.1, 0.2, 0.3, 0.4)]
    va, ba = [a for a, _ in reps], [b for _, b in reps]
    d = np.array([auc(a.label, a.pred) - auc(b.label, b.pred) for a, b in reps])
    within = np.array([hierarchical_bootstrap([a], [b], n_boot=400, seed=3).sd for a, b in reps]) ** 2
    assert within.mean() < 0.02 * d.var()
    expected = math.sqrt((d.var() + within.mean()) / len(reps))  # d.var(): population variance (ddof 0)
    res = hierarchical_bootstrap(va, ba, n_boot=2000, seed=0)
    assert res.delta == pytest.approx(d.mean(), abs=1e-12)
    assert res.n_valid == 2000 and res.n_replicates == 5 and not res.two_way
    assert res.sd == pytest.approx(expected, rel=0.1)
    assert res.ci_high - res.ci_low == pytest.approx(2 * 1.96 * expected, rel=0.15)
    assert res.ci_low < res.delta < res.ci_high


def test_a_users_rows_move_together() -> None:
    """Repeating every user's one row 4 times changes nothing for a user-level resample (same seed, same user
    draws, every weight x 4): the same draws exactly. Resampling rows would shrink the sd by about 2."""
    rng = np.random.default_rng(2)
    one = [_replicate(rng, 400, 1, 0.2) for _ in range(2)]
    four = [tuple(ScoredRows(np.repeat(x.user_idx, 4), np.repeat(x.item_idx, 4), np.repeat(x.label, 4),
                             np.repeat(x.pred, 4)) for x in pair) for pair in one]
    a = hierarchical_bootstrap([v for v, _ in one], [b for _, b in one], n_boot=300, seed=5)
    b = hierarchical_bootstrap([v for v, _ in four], [b for _, b in four], n_boot=300, seed=5)
    assert (b.delta, b.ci_low, b.ci_high, b.sd, b.p) == pytest.approx((a.delta, a.ci_low, a.ci_high, a.sd, a.p),
                                                                      rel=1e-12)


def test_two_way_bootstrap_sees_item_level_effects() -> None:
    """On a cold-like slice where the variant helps on some items and hurts on others, a user-only resample
    misses the item clustering; the pigeonhole (user x item) resample widens the interval."""
    rng = np.random.default_rng(4)
    n_users, n_items, n = 600, 12, 6000
    user, item = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    y = (rng.random(n) < 0.4).astype(float)
    base = y + rng.normal(size=n)
    item_effect = rng.normal(0, 0.6, n_items)
    va = [ScoredRows(user, item, y, base + item_effect[item] * y)]
    ba = [ScoredRows(user, item, y, base)]
    users_only = hierarchical_bootstrap(va, ba, n_boot=500, seed=0)
    two_way = hierarchical_bootstrap(va, ba, two_way=True, n_boot=500, seed=0)
    assert two_way.two_way and two_way.delta == users_only.delta
    assert two_way.sd > 2 * users_only.sd


def test_bootstrap_p_seed_and_alignment() -> None:
    rng = np.random.default_rng(6)
    reps = [_replicate(rng, 300, 3, 0.8) for _ in range(3)]
    va, ba = [a for a, _ in reps], [b for _, b in reps]
    strong = hierarchical_bootstrap(va, ba, n_boot=500, seed=1)
    assert strong.ci_low > 0 and strong.p == pytest.approx(2 / 501)  # no draw at or below 0
    assert hierarchical_bootstrap(va, ba, n_boot=500, seed=1) == strong  # seeded
    assert hierarchical_bootstrap(va, ba, n_boot=500, seed=2) != strong
    same = hierarchical_bootstrap(ba, ba, n_boot=200, seed=1)  # identical scores: every draw is 0
    assert same.delta == 0.0 and same.p == 1.0 and same.sd == 0.0
    bad = ScoredRows(va[0].user_idx[::-1], va[0].item_idx, va[0].label, va[0].pred)
    with pytest.raises(DataError, match="user_idx"):
        hierarchical_bootstrap([bad], [ba[0]], n_boot=10)


def test_several_split_seeds_make_the_split_seed_the_unit() -> None:
    """Cells keyed (split seed, replicate seed): paired on the cell, then averaged within each split seed; one
    split seed (or plain int keys) keeps the replicate seeds as units."""
    a = {(0, 0): 0.70, (0, 1): 0.72, (5, 0): 0.60, (5, 1): 0.66, (9, 0): 0.50}
    b = {(0, 0): 0.60, (0, 1): 0.60, (5, 0): 0.58, (5, 1): 0.58, (9, 0): math.nan}
    u = paired_units(a, b)  # (9, 0) has no finite baseline: out
    assert (u.kind, u.ids, u.seeds, u.n) == ("split seed", (0, 5), (0, 1), 2)
    assert u.values == pytest.approx([0.11, 0.05])
    want = paired_t([0.11, 0.05])
    assert paired_delta(a, b) == pytest.approx((want.delta, want.p, want.ci_low, want.ci_high))
    assert unit_values(a).values == pytest.approx([0.71, 0.63, 0.50])
    one = paired_units({(3, 0): 0.7, (3, 1): 0.8}, {(3, 0): 0.6, (3, 1): 0.6})
    assert (one.kind, one.ids) == ("seed", (0, 1)) and one.values == pytest.approx([0.1, 0.2])
    assert paired_units({0: 0.7, 2: 0.8}, {0: 0.6, 2: 0.6}).ids == (0, 2)


def _exact(delta: float, n_users: int = 50) -> tuple[ScoredRows, ScoredRows]:
    """A replicate whose delta AUC is `delta` (0.5 or 1.0) on every resample: each user has one positive and one
    negative, the variant ranks them perfectly (AUC 1), the baseline ties them (0.5) or inverts them (0)."""
    user = np.repeat(np.arange(n_users), 2)
    y = np.tile([1.0, 0.0], n_users)
    base = np.full(y.size, 0.5) if delta == 0.5 else 1.0 - y
    return ScoredRows(user, user, y, y.copy()), ScoredRows(user, user, y, base)


def test_grouped_bootstrap_resamples_split_seeds_first() -> None:
    """Known variance: two split seeds, each with two replicates of exact deltas 0.5 / 0.5 and 1.0 / 1.0. Split
    seeds resampled first: D* = the mean of 2 split means drawn from {0.5, 1.0}, sd = 0.25 / sqrt(2) = 0.177.
    Ignoring the grouping (4 replicates iid) gives 0.25 / sqrt(4) = 0.125, too narrow for a between-split
    effect. One group is the two-stage bootstrap with the very same draws."""
    reps = [_exact(0.5), _exact(0.5), _exact(1.0), _exact(1.0)]
    va, ba = [a for a, _ in reps], [b for _, b in reps]
    grouped = hierarchical_bootstrap(va, ba, n_boot=4000, seed=0, groups=[0, 0, 5, 5])
    flat = hierarchical_bootstrap(va, ba, n_boot=4000, seed=0)
    assert grouped.delta == pytest.approx(0.75) and flat.delta == pytest.approx(0.75)
    assert grouped.sd == pytest.approx(0.25 / math.sqrt(2), rel=0.05)
    assert flat.sd == pytest.approx(0.25 / math.sqrt(4), rel=0.05)
    assert set(np.round([grouped.ci_low, grouped.ci_high], 6)) <= {0.5, 0.75, 1.0}
    same = hierarchical_bootstrap(va, ba, n_boot=500, seed=3, groups=[7, 7, 7, 7])
    plain = hierarchical_bootstrap(va, ba, n_boot=500, seed=3)
    assert (same.ci_low, same.ci_high, same.sd, same.p) == (plain.ci_low, plain.ci_high, plain.sd, plain.p)
    # unbalanced: the split mean weighs each split once, whatever its replicate count
    unbalanced = hierarchical_bootstrap([_exact(0.5)[0]] * 3 + [_exact(1.0)[0]],
                                        [_exact(0.5)[1]] * 3 + [_exact(1.0)[1]], n_boot=200, groups=[0, 0, 0, 1])
    assert unbalanced.delta == pytest.approx(0.75)
    with pytest.raises(ValueError, match="one group per replicate"):
        hierarchical_bootstrap(va, ba, n_boot=10, groups=[0, 1])
