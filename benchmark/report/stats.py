"""The statistics of the report: intervals over seeds, paired tests of deltas, Holm's correction.

    mean_ci        mean, sample std and Student-t interval over seeds
    paired_t       the paired t-test of per-seed differences as a typed record (PairedT)
    paired_delta   the same as a tuple (delta, p, ci_low, ci_high), the report's historical form
    paired_units, unit_values
                   the analysis units of a run with several split seeds (data.split.seeds): the split seed,
                   its replicates averaged (below)
    holm           Holm-Bonferroni adjusted p-values of one family of tests (step-down)
    tost           two one-sided tests of a paired delta within a margin (equivalence; Tost)
    mde, replicates_needed, sd_interval
                   the minimum detectable effect of a paired t at a power, the replicates a target effect
                   needs, and how uncertain the sd behind them is
    verdict        gain / loss / equivalent / inconclusive from an interval, a Holm p and TOST
    weighted_auc, hierarchical_bootstrap
                   AUC with integer row weights; the two-stage (replicates, then users, or users x items)
                   paired bootstrap of a delta AUC (ScoredRows in, BootstrapDelta out)

Pure numpy/scipy: no torch, no polars. Sources: Holm (1979); Schuirmann (1987) and Lakens (2017) for TOST;
Davison & Hinkley (1997) §3.8, Field & Welsh (2007) and Owen (2007, the pigeonhole bootstrap) for the bootstrap.

A delta is called significant only when its Holm-adjusted p-value is below the level (0.05): testing many
variants x models x slices x metrics with raw p-values would call noise a gain.

A perfectly constant per-seed difference has sample sd 0 and no t statistic. It still gets a p-value, so that
Holm's family size m does not depend on the data (a p that silently leaves the family changes m): p = 0 when
the constant is nonzero (the t statistic is +-infinite), p = 1 when it is zero (t = 0/0; no evidence of a
difference). "Constant" and "zero" are judged to CONSTANT_TOL, far below any AUC resolution
and far above float round-off of a subtraction of numbers in [0, 1].

Units of analysis. A cell is keyed by its replicate seed, or by (split seed, replicate seed) when the suite
draws several splits (data.split.seeds). With one split seed the replicate seeds are the units (n = seeds).
With several, replicates are nested in split seeds (every replicate of a split shares its split and its cold
items), so they are not independent draws of the whole experiment: the unit is the split seed and its value
the mean over its replicates (the analysis of a balanced nested design on the top-level means, which carries
the split-to-split variance; Snedecor & Cochran 1989 §13.8). A suite that pairs split seed i with replicate
seed i (data.split.seed_pairing = "zipped") has one replicate per split: every unit is then an independent
draw of split, cold items and pipeline seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

ALPHA = 0.05
CONSTANT_TOL = 1e-12  # per-seed differences within this of each other are constant; within it of 0, zero


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sample std, ci_low, ci_high) with a Student-t interval; one value gives a zero-width interval."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return (math.nan,) * 4  # type: ignore[return-value]
    mean = float(v.mean())
    if v.size == 1:
        return mean, 0.0, mean, mean
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=v.size - 1)) * std / math.sqrt(v.size)
    return mean, std, mean - half, mean + half


@dataclass(frozen=True)
class PairedT:
    """The paired t-test of per-seed differences d_i = variant - baseline (same split, same seed).

    n pairs, delta = mean d, sd = sample sd of d (ddof 1), t = delta / (sd / sqrt n) on df = n - 1, p two-sided,
    [ci_low, ci_high] the `confidence` t interval of the mean difference. p_source: "t" (the test), "constant"
    (sd = 0: p = 0 for a nonzero constant, 1 for zero; see the module doc) or "untestable" (n < 2: p, sd and the
    interval are NaN)."""

    n: int
    delta: float
    sd: float
    t: float
    p: float
    ci_low: float
    ci_high: float
    p_source: Literal["t", "constant", "untestable"]


Unit = int | tuple[int, int]  # a cell's key: its replicate seed, or (split seed, replicate seed)


@dataclass(frozen=True)
class Units:
    """The analysis units of one comparison (module doc): kind "seed" (ids: the replicate seeds) or "split seed"
    (ids: the split seeds, each value the mean over its replicates); values (n,) in id order; seeds: the
    replicate seeds that went into them."""

    kind: Literal["seed", "split seed"]
    ids: tuple[int, ...]
    values: np.ndarray
    seeds: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.ids)


def _units(pairs: Mapping[Unit, float]) -> Units:
    """Finite values keyed by Unit -> Units (several split seeds: the split seed, its replicates averaged)."""
    keys = sorted(pairs, key=lambda k: k if isinstance(k, tuple) else (0, k))
    splits = {k[0] for k in keys if isinstance(k, tuple)}
    seeds = tuple(sorted({k[1] if isinstance(k, tuple) else k for k in keys}))
    if len(splits) <= 1 or not all(isinstance(k, tuple) for k in keys):
        ids = tuple(k[1] if isinstance(k, tuple) else k for k in keys)
        return Units("seed", ids, np.array([pairs[k] for k in keys], dtype=np.float64), seeds)
    ids = tuple(sorted(splits))
    vals = [float(np.mean([pairs[k] for k in keys if k[0] == s])) for s in ids]
    return Units("split seed", ids, np.array(vals, dtype=np.float64), seeds)


def unit_values(values: Mapping[Unit, float]) -> Units:
    """One variant's per-cell values (finite ones) as analysis units (module doc)."""
    return _units({k: v for k, v in values.items() if math.isfinite(v)})


def paired_units(values: Mapping[Unit, float], baseline: Mapping[Unit, float]) -> Units:
    """The paired differences values - baseline over the cells both have (finite), as analysis units: paired on
    the cell (split seed, replicate seed) first, then averaged within a split seed when there are several."""
    common = [k for k in values if k in baseline and math.isfinite(values[k]) and math.isfinite(baseline[k])]
    return _units({k: values[k] - baseline[k] for k in common})


def _diffs(values: Mapping[Unit, float], baseline: Mapping[Unit, float]) -> np.ndarray:
    return paired_units(values, baseline).values


def is_constant(diff: np.ndarray) -> bool:
    """True when the differences (n,) agree to CONSTANT_TOL (relative to their size when above 1)."""
    return bool(diff.size) and float(diff.max() - diff.min()) <= CONSTANT_TOL * max(1.0, float(np.abs(diff).max()))


def paired_t(diff: Sequence[float] | np.ndarray, confidence: float = 0.95) -> PairedT:
    """The paired t-test of the per-seed differences diff (n,); see PairedT."""
    from scipy import stats

    d = np.asarray(diff, dtype=np.float64).ravel()
    if d.size == 0:
        return PairedT(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, "untestable")
    delta = float(d.mean())
    if d.size < 2:
        return PairedT(1, delta, math.nan, math.nan, math.nan, math.nan, math.nan, "untestable")
    if is_constant(d):
        zero = abs(delta) <= CONSTANT_TOL
        return PairedT(int(d.size), delta, 0.0, 0.0 if zero else math.copysign(math.inf, delta),
                       1.0 if zero else 0.0, delta, delta, "constant")
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(d.size)
    t = delta / se
    half = float(stats.t.ppf(0.5 + confidence / 2, df=d.size - 1)) * se
    p = float(2 * stats.t.sf(abs(t), df=d.size - 1))
    return PairedT(int(d.size), delta, sd, t, p, delta - half, delta + half, "t")


def paired_delta(values: Mapping[Unit, float], baseline: Mapping[Unit, float],
                 confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean of per-unit differences vs the baseline, paired t-test p-value, t-interval low, high) over the
    cells both have (paired_units, then paired_t). p and the interval are NaN under 2 pairs; a constant difference has a
    zero-width interval and p = 0 (nonzero) or 1 (zero)."""
    r = paired_t(_diffs(values, baseline), confidence)
    return r.delta, r.p, r.ci_low, r.ci_high


def holm(pvalues: Sequence[float], count_untestable: bool = False) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in input order: adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)) over
    the sorted finite p-values. NaN entries (untestable) stay NaN. By default they are not counted in the family
    (m = the finite p-values, the report's historical rule); with count_untestable they count in m as if their
    p were 1 (sorted last), so m is the number of declared tests whatever the data."""
    finite = [(p, i) for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    out = [math.nan] * len(pvalues)
    m = len(pvalues) if count_untestable else len(finite)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def family_size(pvalues: Sequence[float]) -> int:
    """How many tests of a family Holm's correction counts (the finite p-values)."""
    return sum(1 for p in pvalues if p is not None and math.isfinite(p))


# ---- equivalence (TOST), power, verdicts ---------------------------------------------------------------


@dataclass(frozen=True)
class Tost:
    """Two one-sided t-tests of a paired difference against the margin (-margin, +margin) (Schuirmann 1987;
    Lakens 2017). H01: delta <= -margin, p_lower = P(T >= (mean + margin) / se); H02: delta >= +margin,
    p_upper = P(T <= (mean - margin) / se); T ~ t(n - 1). p = max(p_lower, p_upper); equivalent when p < alpha,
    which is the same as the (1 - 2 alpha) t interval [ci_low, ci_high] lying strictly inside the margin.
    A constant difference (sd 0) rejects a one-sided null exactly when the constant lies strictly on the
    alternative's side (p 0, else 1). Under 2 pairs p and the interval are NaN and equivalent is False."""

    margin: float
    alpha: float
    p_lower: float
    p_upper: float
    p: float
    ci_low: float
    ci_high: float
    equivalent: bool


def tost(diff: Sequence[float] | np.ndarray, margin: float, alpha: float = ALPHA) -> Tost:
    """TOST of the per-seed differences diff (n,) within +-margin (margin > 0) at level alpha; see Tost."""
    from scipy import stats

    if not margin > 0 or not 0 < alpha < 0.5:
        raise ValueError(f"tost: expected margin > 0 and 0 < alpha < 0.5, got margin={margin}, alpha={alpha}")
    d = np.asarray(diff, dtype=np.float64).ravel()
    if d.size < 2:
        return Tost(margin, alpha, math.nan, math.nan, math.nan, math.nan, math.nan, False)
    mean = float(d.mean())
    if is_constant(d):
        p_lo, p_hi, half = float(mean <= -margin), float(mean >= margin), 0.0
    else:
        se = float(d.std(ddof=1)) / math.sqrt(d.size)
        p_lo = float(stats.t.sf((mean + margin) / se, df=d.size - 1))
        p_hi = float(stats.t.cdf((mean - margin) / se, df=d.size - 1))
        half = float(stats.t.ppf(1 - alpha, df=d.size - 1)) * se
    p = max(p_lo, p_hi)
    return Tost(margin, alpha, p_lo, p_hi, p, mean - half, mean + half, p < alpha)


def mde(sd: float, n: int, alpha: float = ALPHA, power: float = 0.8) -> float:
    """Minimum detectable effect of a two-sided paired t over n replicates whose differences have sd `sd`:
    (t_{1-alpha/2, n-1} + t_{power, n-1}) sd / sqrt(n) (the noncentral-t power is approximated by
    shifting the central t). Under Holm pass alpha / m, the level the smallest p must reach. inf under 2."""
    from scipy import stats

    if n < 2:
        return math.inf
    return float((stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / math.sqrt(n))


def replicates_needed(sd: float, effect: float, alpha: float = ALPHA, power: float = 0.8,
                      cap: int = 1000) -> int | None:
    """The smallest n >= 2 with mde(sd, n, alpha, power) <= effect (effect > 0), found over n = 2..cap since the
    t quantiles depend on n; None when even n = cap is not enough, or sd is not finite."""
    from scipy import stats

    if not effect > 0:
        raise ValueError(f"replicates_needed: expected effect > 0, got {effect}")
    if not math.isfinite(sd) or cap < 2:
        return None
    n = np.arange(2, cap + 1)
    m = (stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / np.sqrt(n)
    ok = np.flatnonzero(m <= effect)
    return int(n[ok[0]]) if ok.size else None


def sd_interval(sd: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The chi-square interval of a normal sd from a sample sd over n values (df = n - 1):
    sd sqrt(df / chi2_{(1+c)/2}) .. sd sqrt(df / chi2_{(1-c)/2}); with df = 2 about 0.52 sd .. 6.3 sd, which is
    how uncertain an MDE or a replicate count computed from that sd is. (nan, nan) under 2 values."""
    from scipy import stats

    if n < 2 or not math.isfinite(sd):
        return math.nan, math.nan
    df = n - 1
    return (float(sd * math.sqrt(df / stats.chi2.ppf((1 + confidence) / 2, df))),
            float(sd * math.sqrt(df / stats.chi2.ppf((1 - confidence) / 2, df))))


Verdict = Literal["gain", "loss", "equivalent", "inconclusive"]


def fmt_p(p: float | None, alpha: float = ALPHA) -> str:
    """A p-value to 3 significant digits, with as many more as it takes (up to 12) for the printed value to lie
    on the same side of alpha as p: a Holm p of 0.04995 beside a **gain** prints as 0.04995, never as 0.05 (nor
    0.0500000001 as 0.05 on the wrong side). "–" for None."""
    if p is None:
        return "–"
    text = format(p, ".3g")
    for digits in range(4, 13):
        if not math.isfinite(p) or (float(text) < alpha) == (p < alpha):
            break
        text = format(p, f".{digits}g")
    return text


def verdict(ci_low: float, ci_high: float, p_holm: float, equivalent: bool, alpha: float = ALPHA) -> Verdict:
    """The verdict of one contrast:
        gain          the (1 - alpha) interval of the delta lies above 0 and the Holm-adjusted p < alpha
        loss          it lies below 0 and the Holm-adjusted p < alpha
        equivalent    otherwise, when TOST declares equivalence (the (1 - 2 alpha) interval inside the margin)
        inconclusive  anything else. A test that is not significant is never read as "no difference".
    A gain or loss takes precedence over equivalence: a significant delta smaller than the margin is reported
    as the gain or loss it is (the record's TOST fields still say that it lies within the margin)."""
    significant = math.isfinite(p_holm) and p_holm < alpha
    if significant and ci_low > 0:
        return "gain"
    if significant and ci_high < 0:
        return "loss"
    return "equivalent" if equivalent else "inconclusive"


# ---- hierarchical paired bootstrap of a delta AUC ----------------------------------------------------------


class _Ranked:
    """One set of scores sorted once, for many weighted AUCs: the Mann-Whitney statistic with row weights,
    ties counting one half: sum over positives of w (negative weight below + half the tied negative weight),
    over W+ W-. With C(j) the negative weight among the first j rows in score order, a positive whose group of
    tied scores spans positions [s, e) counts C(s) + (C(e) - C(s)) / 2 = (C(s) + C(e)) / 2, so one cumulative sum
    over the negatives' weights serves every tie (and no tie). Integer weights keep every sum exact (int64)."""

    def __init__(self, labels: np.ndarray, preds: np.ndarray) -> None:
        order = np.argsort(preds, kind="stable")
        ps = preds[order]
        ys = labels[order]
        n = ps.size
        new = np.r_[True, ps[1:] != ps[:-1]] if n else np.zeros(0, dtype=bool)
        starts = np.flatnonzero(new)  # groups of tied scores: [starts[g], ends[g])
        ends = np.r_[starts[1:], n]
        group = np.cumsum(new) - 1  # the group of each position in score order
        pos, neg = np.flatnonzero(ys == 1), np.flatnonzero(ys == 0)
        neg_before = np.r_[0, np.cumsum(ys == 0)]  # negatives among the first j positions (j = 0..n)
        self.pos_rows, self.neg_rows = order[pos], order[neg]  # row indices of the positives and negatives
        self.lo = neg_before[starts[group[pos]]]  # per positive: index into the negatives' cumulative sum
        self.hi = neg_before[ends[group[pos]]]

    def auc(self, weights: np.ndarray) -> np.ndarray:
        """weights (k, n) in row order -> (k,) weighted AUCs; NaN where a weighting leaves one class."""
        return self.auc_split(np.take(weights, self.pos_rows, axis=1), np.take(weights, self.neg_rows, axis=1))

    def auc_split(self, wp: np.ndarray, wn: np.ndarray) -> np.ndarray:
        """The positives' weights (k, n+) in the order of pos_rows and the negatives' (k, n-) in the order of
        neg_rows -> (k,). Gather them with np.take(..., axis=1): a fancy-indexed w[:, idx] comes out
        Fortran-ordered and its row cumsum is several times slower."""
        k = wp.shape[0]
        c = np.zeros((k, wn.shape[1] + 1), dtype=np.result_type(wn.dtype, wp.dtype))
        np.cumsum(wn, axis=1, out=c[:, 1:])
        num = 0.5 * (wp * (np.take(c, self.lo, axis=1) + np.take(c, self.hi, axis=1))).sum(1)
        den = wp.sum(1) * c[:, -1]
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _counts(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """k independent multinomial(n; 1/n, ..., 1/n) draws (k, n) int64: how often each of n units is drawn."""
    idx = rng.integers(0, n, size=(k, n)) + (np.arange(k) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=k * n).reshape(k, n)


def weighted_auc(labels: np.ndarray, preds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC with row weights: labels (n,) in {0, 1}, preds (n,), weights (n,) or (k, n) -> () or (k,). A row of
    integer weight c counts as c copies of the impression (0 drops it). Same statistic as
    benchmark.cells.metrics.weighted_auc, without polars."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    out = _Ranked(y, np.asarray(preds, dtype=np.float64).ravel()).auc(np.atleast_2d(np.asarray(weights, np.float64)))
    return out if np.ndim(weights) == 2 else out[0]


@dataclass(frozen=True, eq=False)
class ScoredRows:
    """One variant's predictions on one replicate's test rows of a slice, all (n,): user_idx, item_idx (the
    contiguous indices), label in {0, 1}, pred (a score). The two variants of a contrast must hold the same
    rows in the same order (same split and seed), so a resample weighs the same impressions for both."""

    user_idx: np.ndarray
    item_idx: np.ndarray
    label: np.ndarray
    pred: np.ndarray


@dataclass(frozen=True)
class BootstrapDelta:
    """A hierarchical paired bootstrap of delta AUC = variant - baseline (hierarchical_bootstrap).

    delta: the mean over replicates of the per-replicate delta on the rows as they are; ci_low, ci_high: the
    percentile interval at `confidence` of the n_valid finite draws; p: two-sided bootstrap p,
    min(1, 2 min((1 + #{D* <= 0}) / (1 + B), (1 + #{D* >= 0}) / (1 + B))) (the +1 keeps p > 0 for a finite B;
    Davison & Hinkley 1997 §4.4); sd: the draws' sd. two_way: users and items resampled (Owen 2007)."""

    delta: float
    ci_low: float
    ci_high: float
    p: float
    sd: float
    n_boot: int
    n_valid: int
    n_replicates: int
    two_way: bool
    confidence: float
    seed: int


def _check_pair(a: ScoredRows, b: ScoredRows, r: int) -> tuple[np.ndarray, ...]:
    from benchmark.core.errors import DataError

    cols = [np.asarray(getattr(x, f)).ravel() for x in (a, b) for f in ("user_idx", "item_idx", "label", "pred")]
    n = cols[0].size
    if any(c.size != n for c in cols):
        raise DataError(f"bootstrap: replicate {r}: the columns of the two variants differ in length "
                        f"({[c.size for c in cols]})")
    for k, name in enumerate(("user_idx", "item_idx", "label")):
        if not np.array_equal(cols[k], cols[k + 4]):
            raise DataError(f"bootstrap: replicate {r}: the two variants' {name} columns differ; the rows must be "
                            "the same test rows in the same order")
    return cols[0], cols[1], cols[2].astype(np.float64), cols[3].astype(np.float64), cols[7].astype(np.float64)


def hierarchical_bootstrap(variant: Sequence[ScoredRows], baseline: Sequence[ScoredRows], *,
                           two_way: bool = False, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0,
                           chunk: int = 64, groups: Sequence[int] | None = None) -> BootstrapDelta:
    """Two-stage paired bootstrap of delta AUC over R replicates (variant[r], baseline[r]: the same rows).

    Each draw resamples the R replicates with replacement; within every drawn copy of a replicate it resamples
    the test users (a user's rows move together: a user drawn c times weighs c), or with two_way the users
    AND the items (Owen 2007's pigeonhole bootstrap: a row weighs c_user x c_item, 0 unless both are drawn),
    computes both variants' weighted AUC on that SAME resample and takes their difference; the draw's D* is the
    mean over its R copies (Davison & Hinkley 1997 §3.8). A draw where some resample leaves one class is
    dropped (n_valid counts the rest).

    groups (R,): each replicate's split seed, when the suite drew several (data.split.seeds): a draw then
    resamples the G split seeds first, within every drawn copy of a split its replicates, then the users (three
    stages), and D* is the mean over the drawn splits of their replicates' mean. The copies of a replicate over
    c drawn copies of its split are one multinomial(c R_g; 1/R_g) (a sum of c independent ones). One group
    (or None) is the two-stage bootstrap above, with the very same draws.

    Vectorised: each replicate's scores are sorted once; the within-replicate resamples are (chunk, n) weight
    matrices (split into the positives' and the negatives' columns, _Ranked); the replicate draw's copies are then summed per draw with bincount. Seeded by `seed`."""
    if len(variant) != len(baseline) or not variant:
        raise ValueError(f"hierarchical_bootstrap: expected as many baseline as variant replicates (>= 1), got "
                         f"{len(variant)} and {len(baseline)}")
    rng = np.random.default_rng(seed)
    n_rep = len(variant)
    group = np.zeros(n_rep, dtype=np.int64) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    if group.size != n_rep:
        raise ValueError(f"hierarchical_bootstrap: expected one group per replicate ({n_rep}), got {group.size}")
    n_groups = int(group.max()) + 1
    size = np.bincount(group, minlength=n_groups)  # R_g: replicates per group
    if n_groups == 1:
        copies = rng.multinomial(n_rep, np.full(n_rep, 1.0 / n_rep), size=n_boot)  # (B, R) times each is drawn
    else:
        drawn = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)  # (B, G)
        copies = np.zeros((n_boot, n_rep), dtype=np.int64)
        for g in range(n_groups):
            members = np.flatnonzero(group == g)
            copies[:, members] = rng.multinomial(drawn[:, g] * size[g], np.full(size[g], 1.0 / size[g]))
    total = np.zeros(n_boot)
    point = []
    for r, (a, b) in enumerate(zip(variant, baseline)):
        users, items, y, pa, pb = _check_pair(a, b, r)
        ra, rb = _Ranked(y, pa), _Ranked(y, pb)
        ones = np.ones((1, y.size), dtype=np.int64)
        point.append(float(ra.auc(ones)[0] - rb.auc(ones)[0]))
        u = np.unique(users, return_inverse=True)[1].ravel()
        i = np.unique(items, return_inverse=True)[1].ravel()
        nu, ni = int(u.max()) + 1, int(i.max()) + 1
        # the user (and item) of each positive and each negative, in each variant's score order
        units = [(u[x.pos_rows], u[x.neg_rows], i[x.pos_rows], i[x.neg_rows]) for x in (ra, rb)]
        owner = np.repeat(np.arange(n_boot), copies[:, r])  # the draw each within-replicate resample belongs to
        deltas = np.empty(owner.size)
        for start in range(0, owner.size, chunk):
            k = min(chunk, owner.size - start)
            cu = _counts(rng, nu, k)
            ci = _counts(rng, ni, k) if two_way else None
            aucs = []
            for ranked, (up, un, ip, in_) in zip((ra, rb), units):
                if ci is None:
                    aucs.append(ranked.auc_split(np.take(cu, up, axis=1), np.take(cu, un, axis=1)))
                else:
                    aucs.append(ranked.auc_split(np.take(cu, up, axis=1) * np.take(ci, ip, axis=1),
                                            np.take(cu, un, axis=1) * np.take(ci, in_, axis=1)))
            deltas[start:start + k] = aucs[0] - aucs[1]
        # a NaN resample makes its draw NaN; a replicate weighs 1 / R_g within its split's mean
        total += np.bincount(owner, weights=deltas, minlength=n_boot) / (size[group[r]] if n_groups > 1 else 1)
    draws = total / (n_groups if n_groups > 1 else n_rep)
    if n_groups > 1:  # the point estimate: mean over splits of their replicates' mean
        point = [float(np.mean([point[r] for r in np.flatnonzero(group == g)])) for g in range(n_groups)]
    draws = draws[np.isfinite(draws)]
    nv = int(draws.size)
    if nv == 0:
        return BootstrapDelta(float(np.mean(point)), math.nan, math.nan, math.nan, math.nan, n_boot, 0, n_rep,
                              two_way, confidence, seed)
    lo, hi = np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2])
    p = min(1.0, 2 * min((1 + int((draws <= 0).sum())) / (1 + nv), (1 + int((draws >= 0).sum())) / (1 + nv)))
    return BootstrapDelta(float(np.mean(point)), float(lo), float(hi), p, float(draws.std(ddof=1)) if nv > 1 else
                          math.nan, n_boot, nv, n_rep, two_way, confidence, seed)
