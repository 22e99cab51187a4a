"""Sampled negatives for click-only logs (data.negatives, benchmark/config/data.py NegativesConfig).

For every positive impression (u, i, t) of a split, `ratio` distinct items j drawn from the split's pool such
that u had no impression of j at any time <= t (in the whole log, cold rows included), each becoming a row
(u, j, t, label 0) with the positive's history. Pools:

    train       items with a real training impression (warm items): a cold item drawn here would get a
                training row and stop being cold, so the cold slice stays free of training rows
    val, test   the whole catalogue 0..N-1, cold items included, so the cold slice has both labels

Distributions over a pool: "uniform", or "popularity" with P(j) proportional to (train_count_j + 1) ** exponent
(word2vec's unigram^(3/4), Mikolov et al. 2013; the + 1 keeps never-trained items drawable in val and test).

Rejection sampling, vectorised per round: every unfilled slot draws a candidate at once; candidates the user
had seen by then, or already drawn for the same positive, are rejected and redrawn next round. After
MAX_ROUNDS the few slots left are filled exactly from the complement (`_fill_exact`); a positive whose user
has seen almost the whole pool may get fewer than `ratio` (counted in the stats as `short`).
Deterministic: one numpy Generator per split seeded by (seed, split code); rows are visited in
(user_idx, ts, item_idx) order.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from benchmark.config.data import NegativesConfig

MAX_ROUNDS = 64


class SeenIndex:
    """First impression time of every (user, item) pair of a log: `seen(u, j, t)` = u had j at a time <= t.

    keys: (P,) int64 sorted, user * n_items + item; first_ts: (P,) int64 aligned with keys.
    """

    def __init__(self, user: np.ndarray, item: np.ndarray, ts: np.ndarray, n_items: int) -> None:
        self.n_items = np.int64(n_items)
        key = user.astype(np.int64) * self.n_items + item.astype(np.int64)
        order = np.lexsort((ts, key))
        key, ts = key[order], ts[order]
        first = np.ones(key.size, dtype=bool)
        first[1:] = key[1:] != key[:-1]
        self.keys, self.first_ts = key[first], ts[first].astype(np.int64)

    def seen(self, user: np.ndarray, item: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """(M,) bool for candidate triples (user, item, ts)."""
        if self.keys.size == 0:
            return np.zeros(user.size, dtype=bool)
        key = user.astype(np.int64) * self.n_items + item.astype(np.int64)
        pos = np.minimum(np.searchsorted(self.keys, key), self.keys.size - 1)
        return (self.keys[pos] == key) & (self.first_ts[pos] <= ts)


def pool_weights(pool: np.ndarray, train_count: np.ndarray, cfg: NegativesConfig) -> np.ndarray | None:
    """Cumulative distribution over `pool` (None = uniform)."""
    if cfg.kind == "uniform":
        return None
    w = (train_count[pool].astype(np.float64) + 1.0) ** cfg.exponent
    cdf = np.cumsum(w)
    return cdf / cdf[-1]


def _draw(rng: np.random.Generator, pool: np.ndarray, cdf: np.ndarray | None, n: int) -> np.ndarray:
    if cdf is None:
        return pool[rng.integers(0, pool.size, size=n)]
    return pool[np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), pool.size - 1)]


def sample(user: np.ndarray, ts: np.ndarray, item: np.ndarray, pool: np.ndarray, cdf: np.ndarray | None,
           seen: SeenIndex, ratio: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Negatives for positives (user, ts, item): (M,) arrays. Returns (row, neg_item): for each filled slot,
    the index of its positive in the input and the drawn item, in (row, slot) order; slots that could not be
    filled are left out."""
    m = user.size
    out = np.full((m, ratio), -1, dtype=np.int64)
    if m == 0 or pool.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    for _ in range(MAX_ROUNDS):
        todo = np.flatnonzero(out.ravel() < 0)
        if todo.size == 0:
            break
        rows, slots = np.divmod(todo, ratio)
        cand = _draw(rng, pool, cdf, todo.size)
        ok = ~seen.seen(user[rows], cand, ts[rows])
        ok &= ~(out[rows] == cand[:, None]).any(axis=1)  # distinct from the row's earlier slots
        # two slots of one row drawing the same candidate this round: keep the first
        key = rows.astype(np.int64) * np.int64(pool.max() + 1) + cand
        _, first = np.unique(key, return_index=True)
        dup = np.ones(todo.size, dtype=bool)
        dup[first] = False
        ok &= ~dup
        out.ravel()[todo[ok]] = cand[ok]
    left = np.flatnonzero((out < 0).any(axis=1))
    if left.size:
        _fill_exact(out, left, user, ts, pool, cdf, seen, rng)
    filled = out >= 0
    row = np.repeat(np.arange(m, dtype=np.int64), ratio)[filled.ravel()]
    return row, out[filled]


def _fill_exact(out: np.ndarray, left: np.ndarray, user: np.ndarray, ts: np.ndarray, pool: np.ndarray,
                cdf: np.ndarray | None, seen: SeenIndex, rng: np.random.Generator) -> None:
    """Slow path for the rare rows rejection sampling left unfilled: draw without replacement from the items
    allowed for that row (weighted like the pool), as many as it still needs and the complement holds."""
    probs = np.diff(cdf, prepend=0.0) if cdf is not None else np.full(pool.size, 1.0 / pool.size)
    for r in left.tolist():
        have = out[r][out[r] >= 0]
        allowed = ~seen.seen(np.full(pool.size, user[r]), pool, np.full(pool.size, ts[r])) & ~np.isin(pool, have)
        need = int((out[r] < 0).sum())
        cands, p = pool[allowed], probs[allowed]
        k = min(need, cands.size)
        if k:
            pick = rng.choice(cands, size=k, replace=False, p=p / p.sum())
            slots = np.flatnonzero(out[r] < 0)[:k]
            out[r, slots] = pick


def add_negatives(part: pl.DataFrame, pool: np.ndarray, cdf: np.ndarray | None, seen: SeenIndex,
                  cfg: NegativesConfig, split_code: int) -> tuple[pl.DataFrame, dict[str, int]]:
    """`part` (one split's rows: user_idx, item_idx, ts, label, hist_item_idx[, rating]) with its negatives
    appended, sorted by (user_idx, ts, item_idx); and {"negatives": added, "short": unfilled slots}."""
    part = part.sort(["user_idx", "ts", "item_idx"])
    pos = part.filter(pl.col("label") == 1)
    rng = np.random.default_rng([cfg.seed, split_code])
    row, neg = sample(pos["user_idx"].to_numpy(), pos["ts"].to_numpy(), pos["item_idx"].to_numpy(), pool, cdf,
                      seen, cfg.ratio, rng)
    src = pos.gather(row)
    negs = src.with_columns(pl.Series("item_idx", neg, dtype=pl.Int32), pl.lit(0, dtype=pl.Int8).alias("label"))
    if "rating" in negs.columns:
        negs = negs.with_columns(pl.lit(None, dtype=pl.Float32).alias("rating"))
    out = pl.concat([part, negs.select(part.columns)]).sort(["user_idx", "ts", "item_idx"])
    return out, {"negatives": negs.height, "short": pos.height * cfg.ratio - negs.height}
