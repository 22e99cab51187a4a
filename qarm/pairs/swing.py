"""Swing item-item similarity (Yang et al., "Large Scale Product Graph Construction for Recommendation
in E-commerce", 2020), the I2I model QARM mines its second pair source from (anchors §1.3):

    s(i, j) = sum over user pairs u < v who both have i and j of  w_u * w_v / (alpha + |I_u ∩ I_v|)

with w_u = |I_u| ** -user_weight_power (0 = plain Swing, 0.5 = the paper's user weighting).
Two users who share few items besides i and j are strong evidence that i and j are related.

Two caps bound the cost at scale (the 10M-interaction check, docs/scale.md):
- user degree: users with more than `max_user_degree` distinct positives are skipped (their rows leave the
  user x item matrix before anything else; `swing_user_filter`). Alibaba's open Swing implementations do the
  same (Flink ML's Swing `maxUserBehavior`, default 1000, "filters out active users"; PAI's swing_rec_ext
  `maxClickPerUser`): a very active account is more often a crawler or bulk buyer than a taste, and a user of
  degree D enters D^2 co-occurrences. Skipping, not subsampling, keeps every remaining user's overlap counts
  |I_u ∩ I_v| exact. The weights w_u use the degree of the kept users, unchanged.
- users per item: `max_users_per_item`, a seeded sample of U_i (below). Each item draws its sample from its own
  generator, seeded by (seed, item_idx) (`item_rng`), so an item's neighbours do not depend on which other
  items were computed before it, nor where: `swing_part` computes the items i with i % world_size == rank, and
  the union of the parts over the ranks is the one-process result exactly (`swing_topk` is the part 0 of 1).

Fast path: for each item i, the entries of its users U_i (capped at `max_users_per_item`, a seeded sample),
grouped by item; each pair u < v within an item's group is a term: |I_u ∩ I_v| counts the groups holding the
pair and s(i, j) sums w_u w_v / (alpha + |I_u ∩ I_v|) over the pairs of j's group, all in vectorised numpy,
O(|U_i|^2 + sum_j c_j^2) per item for c_j users on item j (`swing_scores_for_item`), where a dense 0/1 matrix
over the touched items costs O(|U_i|^2 M). `swing_reference` is the literal triple loop the fast path is tested
against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from qarm.errors import QarmError
from qarm.pairs.config import SwingConfig

DEFAULT_SWING = SwingConfig()


def _user_item_matrix(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    r = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items))
    r.data[:] = 1.0  # repeated positives count once
    return r


def swing_user_filter(r: sp.csr_matrix, max_user_degree: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """r: (users x items) 0/1 CSR -> (r with the rows of users of degree > max_user_degree emptied, the
    skipped user_idx (S,) int64)."""
    deg = np.diff(r.indptr)
    skipped = np.flatnonzero(deg > max_user_degree)
    if skipped.size:
        r = (sp.diags((deg <= max_user_degree).astype(r.dtype)) @ r).tocsr()
        r.eliminate_zeros()
    return r, skipped


def item_rng(seed: int, item_idx: int) -> np.random.Generator:
    """The generator of item `item_idx`'s sample of U_i: seeded by (seed, item_idx) alone."""
    return np.random.default_rng([seed, item_idx])


def _ragged_arange(lengths: np.ndarray) -> np.ndarray:
    """(sum(lengths),) int64: 0..l-1 for each l of lengths (L,), concatenated."""
    total = int(lengths.sum())
    return np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def swing_scores_for_item(
    r: sp.csr_matrix, r_t: sp.csr_matrix, i: int, config: SwingConfig, uw: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Swing of item i against every item two or more of its users touched (no other item can score):
    (cols (M,) sorted, scores (M,) float64, support (M,)); i itself excluded. r, r_t: the (users x items) 0/1
    matrix and its transpose (CSR, no repeated entries); uw: (n_users,) user weights; seed: the replicate seed
    (with i, it seeds the sample of U_i when |U_i| > max_users_per_item).

    Read straight from r's arrays: the entries (user, item) of U_i's rows, grouped by item; every pair u < v of
    users in an item's group is one term. |I_u ∩ I_v| is the number of groups that hold the pair, and
    s(i, j) = sum over the pairs of j's group of w_u w_v / (alpha + |I_u ∩ I_v|). Cost O(U^2 + sum_j c_j^2) for
    c_j users of U_i on item j (i's own group is all of U_i)."""
    users = r_t.indices[r_t.indptr[i] : r_t.indptr[i + 1]]
    if len(users) > config.max_users_per_item:
        users = np.sort(item_rng(seed, i).choice(users, size=config.max_users_per_item, replace=False))
    n = len(users)
    starts = r.indptr[users]
    lens = r.indptr[users + 1] - starts
    items = r.indices[_ragged_arange(lens) + np.repeat(starts, lens)]
    order = np.argsort(items, kind="stable")  # by item, then by user (users come in increasing order)
    item_s, user_s = items[order], np.repeat(np.arange(n), lens)[order]
    cols, first, counts = np.unique(item_s, return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(cols)), counts)
    after = counts[group] - 1 - (np.arange(len(item_s)) - first[group])  # partners later in the same group
    a = np.repeat(np.arange(len(item_s)), after)
    b = a + 1 + _ragged_arange(after)
    ua, ub = user_s[a], user_s[b]  # ua < ub
    key = ua * n + ub
    overlap = np.bincount(key, minlength=n * n)[key]  # |I_u ∩ I_v| of each pair
    wu = uw[users]
    scores = np.bincount(group[a], weights=wu[ua] * wu[ub] / (config.alpha + overlap), minlength=len(cols))
    keep = (counts >= 2) & (cols != i)
    return cols[keep], scores[keep], counts[keep]


def swing_topk(
    train_pos: pl.DataFrame, n_items: int, config: SwingConfig = DEFAULT_SWING, *, seed: int = 0
) -> pl.DataFrame:
    """Top-k Swing neighbours of every item: frame (item_idx Int32, neighbor_idx Int32, score Float32).

    train_pos: TRAIN positives (user_idx, item_idx). Users with more than `max_user_degree` distinct positives
    are skipped. Pairs need at least `min_support` common users and a positive score; per item, neighbours
    are ordered by score desc, ties by neighbor_idx. Rows are sorted by item_idx.
    """
    return swing_part(train_pos, n_items, config, seed=seed)


def swing_part(
    train_pos: pl.DataFrame, n_items: int, config: SwingConfig = DEFAULT_SWING, *, seed: int = 0, rank: int = 0,
    world_size: int = 1,
) -> pl.DataFrame:
    """The rows of `swing_topk` whose item_idx i has i % world_size == rank (every rank reads the whole
    train_pos: an item's users and their other items). Concatenated over rank 0..world_size-1 and sorted by
    item_idx (`merge_swing_parts`), the parts are `swing_topk` exactly: each item's sample is seeded by
    (seed, item_idx) alone."""
    if not 0 <= rank < world_size:
        raise QarmError(f"swing_part: rank {rank} outside [0, world_size={world_size})")
    users = train_pos["user_idx"].to_numpy().astype(np.int64)
    items = train_pos["item_idx"].to_numpy().astype(np.int64)
    n_users = int(users.max()) + 1 if len(users) else 0
    r, _ = swing_user_filter(_user_item_matrix(users, items, n_users, n_items), config.max_user_degree)
    r_t = r.T.tocsr()
    deg = np.asarray(r.sum(axis=1)).ravel()
    uw = np.power(np.maximum(deg, 1.0), -config.user_weight_power)
    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    out_s: list[np.ndarray] = []
    candidates = np.flatnonzero(np.diff(r_t.indptr) >= config.min_support)
    for i in candidates[candidates % world_size == rank]:
        cols, scores, support = swing_scores_for_item(r, r_t, int(i), config, uw, seed=seed)
        ok = (support >= config.min_support) & (scores > 0)
        cols, scores = cols[ok], scores[ok]
        top = np.lexsort((cols, -scores))[: config.top_k]
        out_i.append(np.full(len(top), i))
        out_j.append(cols[top])
        out_s.append(scores[top])

    def cat(xs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(xs) if xs else np.zeros(0)

    return pl.DataFrame(
        {
            "item_idx": cat(out_i).astype(np.int32),
            "neighbor_idx": cat(out_j).astype(np.int32),
            "score": cat(out_s).astype(np.float32),
        }
    )


def merge_swing_parts(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """The `swing_part` frames of ranks 0..W-1 -> the `swing_topk` frame (rows by item_idx; an item's rows keep
    their order, the stable sort moves whole items)."""
    return pl.concat(list(parts)).sort("item_idx", maintain_order=True)


def swing_reference(
    user_items: dict[int, set[int]], alpha: float = 1.0, user_weight_power: float = 0.0
) -> dict[tuple[int, int], float]:
    """Literal Swing over all user pairs (slow): {(i, j): score} for i != j, both orders."""
    s: dict[tuple[int, int], float] = {}
    users = sorted(user_items)
    for a, u in enumerate(users):
        for v in users[a + 1 :]:
            common = user_items[u] & user_items[v]
            w = (len(user_items[u]) ** -user_weight_power) * (len(user_items[v]) ** -user_weight_power)
            for i in common:
                for j in common:
                    if i != j:
                        s[(i, j)] = s.get((i, j), 0.0) + w / (alpha + len(common))
    return s
