"""The statistics of the report: intervals over seeds, paired tests of deltas, Holm's correction.

    mean_ci        mean, sample std and Student-t interval over seeds
    paired_delta   mean per-seed difference, its t interval and the paired t-test p-value
    holm           Holm-Bonferroni adjusted p-values of one family of tests (step-down)

A delta is called significant only when its Holm-adjusted p-value is below the level (0.05): testing many
variants x models x slices x metrics with raw p-values would call noise a gain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ALPHA = 0.05


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


def paired_delta(values: dict[int, float], baseline: dict[int, float],
                 confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean of per-seed differences vs the baseline, paired t-test p-value, t-interval low, high) over the
    seeds both have; p and the interval are NaN under 2 pairs, p is NaN when every difference is equal."""
    from scipy import stats

    seeds = sorted(s for s in values if s in baseline and math.isfinite(values[s]) and math.isfinite(baseline[s]))
    if not seeds:
        return (math.nan,) * 4  # type: ignore[return-value]
    diff = np.array([values[s] for s in seeds]) - np.array([baseline[s] for s in seeds])
    delta = float(diff.mean())
    if len(seeds) < 2:
        return delta, math.nan, math.nan, math.nan
    _, _, lo, hi = mean_ci(list(diff), confidence)
    if np.allclose(diff, diff[0]):
        return delta, math.nan, lo, hi
    return delta, float(stats.ttest_rel(diff + 0.0, np.zeros_like(diff)).pvalue), lo, hi


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in input order. NaN entries (untestable) are left NaN and are not
    counted in the family. adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)) over the sorted finite p-values."""
    finite = [(p, i) for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    out = [math.nan] * len(pvalues)
    m = len(finite)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def family_size(pvalues: Sequence[float]) -> int:
    """How many tests of a family Holm's correction counts (the finite p-values)."""
    return sum(1 for p in pvalues if p is not None and math.isfinite(p))
