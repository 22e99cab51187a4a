"""Splits, cold-start item slice, k-core filter, id -> idx maps and popularity buckets.

All functions are pure and deterministic: every sort has a tie-breaker, randomness is seeded.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from benchmark.config.data import SplitConfig
from benchmark.core.errors import DataError

TRAIN, VAL, TEST = 0, 1, 2
EPS = 1e-9  # n * 0.1 can land a hair under an integer in binary floating point


def kcore(inter: pl.DataFrame, k: int) -> pl.DataFrame:
    """Repeatedly drop users and items with fewer than k impressions until none is left."""
    if k <= 1:
        return inter
    while True:
        keep = (pl.len().over("user_id") >= k) & (pl.len().over("item_id") >= k)
        out = inter.filter(keep)
        if out.height == inter.height:
            return out
        inter = out


def natural_order(ids: pl.Series) -> pl.Series:
    """Unique ids in a deterministic order: numeric order when every id is an integer, else lexicographic."""
    uniq = ids.unique()
    as_int = uniq.cast(pl.Int64, strict=False)
    if as_int.null_count() == 0:
        return uniq.gather(as_int.arg_sort()).rename("id")
    return uniq.sort().rename("id")


def assign_split(log: pl.DataFrame, cfg: SplitConfig) -> pl.DataFrame:
    """Add `split` (Int8: 0 train, 1 val, 2 test). `log` must hold user_idx, item_idx, ts."""
    log = log.sort(["user_idx", "ts", "item_idx"])
    if cfg.kind == "global_temporal":
        ts = log["ts"].sort()
        n = ts.len()
        cut_val = int(np.floor(n * (1.0 - cfg.val_frac - cfg.test_frac) + EPS))
        cut_test = int(np.floor(n * (1.0 - cfg.test_frac) + EPS))
        t_val = ts[cut_val] if cut_val < n else ts[-1] + 1
        t_test = ts[cut_test] if cut_test < n else ts[-1] + 1
        split = pl.when(pl.col("ts") >= t_test).then(TEST).when(pl.col("ts") >= t_val).then(VAL).otherwise(TRAIN)
        return log.with_columns(split.cast(pl.Int8).alias("split"))
    r = pl.int_range(pl.len()).over("user_idx")
    n = pl.len().over("user_idx")
    if cfg.kind == "leave_last_out":
        back = n - 1 - r
        split = pl.when(back == 0).then(TEST).when(back == 1).then(VAL).otherwise(TRAIN)
    else:  # per_user_temporal: the last floor(n * test_frac) to test, floor(n * val_frac) before to val
        n_test = (n * cfg.test_frac + EPS).floor().cast(pl.Int64)
        n_val = (n * cfg.val_frac + EPS).floor().cast(pl.Int64)
        split = pl.when(r >= n - n_test).then(TEST).when(r >= n - n_test - n_val).then(VAL).otherwise(TRAIN)
    return log.with_columns(split.cast(pl.Int8).alias("split"))


def pick_cold_items(log: pl.DataFrame, n_items: int, frac: float, seed: int,
                    exclude: np.ndarray | None = None, stream: int = 0) -> np.ndarray:
    """(n_items,) bool: a seeded `frac` (rounded) of the items that have at least one impression.
    exclude: (n_items,) bool, items not to draw (another draw's); the fraction is still of every item with an
    impression. stream: 0 = the test draw (its generator is default_rng(seed), as it always was); another
    value draws from default_rng([seed, stream]), independent of the test draw."""
    candidates = np.sort(log["item_idx"].unique().to_numpy())
    n_cold = int(round(frac * candidates.size))
    if exclude is not None:
        candidates = candidates[~exclude[candidates]]
    if n_cold > candidates.size:
        raise DataError(f"data.split: the cold draw asks for {n_cold} items but {candidates.size} are left once "
                        "the test draw is out; lower data.split.val_cold_item_frac or cold_item_frac")
    mask = np.zeros(n_items, dtype=bool)
    if n_cold:
        rng = np.random.default_rng(seed if stream == 0 else [seed, stream])
        mask[rng.choice(candidates, n_cold, replace=False)] = True
    return mask


def popularity_buckets(train_count: np.ndarray, buckets: int) -> np.ndarray:
    """(N,) int8: items with train rows ranked by (train_count, item_idx) and cut into `buckets`
    equal-size groups, 0 = long tail ... buckets-1 = head. Items with no train row (cold items
    included) get bucket 0."""
    out = np.zeros(train_count.size, dtype=np.int8)
    warm = np.flatnonzero(train_count > 0)
    if warm.size:
        ranked = warm[np.lexsort((warm, train_count[warm]))]
        out[ranked] = (np.arange(warm.size) * buckets // warm.size).astype(np.int8)
    return out
