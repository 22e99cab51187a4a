"""Held-out pairs of alignment: the train / validation / test split of the mined pairs, pair recall@k, and the
references table (frozen, aligned, U2I item-ID, popularity, content probe) on the same test pairs.

Two ways to hold pairs out (AlignConfig.split):

    "item"  a seeded share of the items that occur in pairs is held out for validation, another for test;
            every pair touching a test item is a test pair, every other pair touching a validation item a
            validation pair, the rest train. Held-out items never reach training, as cold items never do, so
            the figures measure what the aligned encoder does for an item it has not seen.
    "pair"  a seeded share of the pairs; their items mostly occur in training pairs too (interpolation).

Validation pairs choose the epoch (early stopping); test pairs are only ever reported.

Shapes: N items, P pairs, d embedding dim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from qarm.alignment.config import AlignConfig
from qarm.alignment.records import SOURCES, AlignReferences, PairRecall, ReferenceRow
from qarm.errors import QarmError
from qarm.ranks import ONE_PROCESS, Ranks

WHAT = {
    "frozen": "frozen encoder output",
    "aligned": "aligned embedding",
    "u2i": "U2I two-tower item-ID embeddings (collaborative reference; the U2I pairs were mined in this space)",
    "popularity": "every query ranks items by their training pair count",
    "probe": "content probe: the text encoder fine-tuned end to end",
}


@dataclass(frozen=True, eq=False)
class PairSplit:
    """train / val / test: (P_*, 2) int64 (trigger_idx, target_idx); train_source: (P_train,), val_source:
    (P_val,), test_source: (P_test,) str pair source ("u2i", "i2i"; "" when the frame has no source column);
    how: "item" or "pair"."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_source: np.ndarray
    val_source: np.ndarray
    test_source: np.ndarray
    how: str


def _pair_arrays(pairs: pl.DataFrame, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    for col in ("trigger_idx", "target_idx"):
        if col not in pairs.columns:
            raise QarmError(f"align: pairs frame lacks column {col!r} (expected trigger_idx, target_idx)")
    ab = pairs.select("trigger_idx", "target_idx").to_numpy().astype(np.int64)
    if len(ab) < 2 or ab.min() < 0 or ab.max() >= n_items:
        raise QarmError(f"align: need >= 2 pairs with item_idx in [0, {n_items}); got {len(ab)} pairs")
    src = pairs["source"].cast(pl.Utf8).to_numpy() if "source" in pairs.columns else np.full(len(ab), "")
    return ab, src.astype(str)


def split_pairs(pairs: pl.DataFrame, n_items: int, config: AlignConfig, seed: int = 0) -> PairSplit:
    """The seeded train / validation / test split of `pairs` (trigger_idx, target_idx[, source]) by item or by
    pair (module docstring). Validation and test are each capped at `max_val_pairs` (a seeded sample)."""
    ab, src = _pair_arrays(pairs, n_items)
    rng = np.random.default_rng(seed)
    if config.split == "pair":
        perm = rng.permutation(len(ab))
        n_test = round(config.test_frac * len(ab))
        n_val = min(round(config.val_frac * len(ab)), len(ab) - n_test - 1)
        part = np.zeros(len(ab), np.int8)
        part[perm[:n_test]], part[perm[n_test : n_test + n_val]] = 2, 1
    else:
        items = rng.permutation(np.unique(ab))
        n_test, n_val = round(config.test_frac * len(items)), round(config.val_frac * len(items))
        role = np.zeros(n_items, np.int8)
        role[items[:n_test]], role[items[n_test : n_test + n_val]] = 2, 1
        part = role[ab].max(axis=1)  # a pair with a test item is a test pair, else with a validation item val
        if not (part == 0).any():
            raise QarmError(f"align: holding out {n_test + n_val} of {len(items)} items leaves no training pair; "
                            "lower align.val_frac / align.test_frac or use align.split = 'pair'")
    keep = {}
    for p in (1, 2):
        idx = np.flatnonzero(part == p)
        if len(idx) > config.max_val_pairs:
            idx = np.sort(rng.choice(idx, config.max_val_pairs, replace=False))
        keep[p] = idx
    tr = np.flatnonzero(part == 0)
    return PairSplit(ab[tr], ab[keep[1]], ab[keep[2]], src[tr], src[keep[1]], src[keep[2]], config.split)


# At most this many (query, item) scores are held at once: the chunk of queries shrinks as the items grow, so the
# held-out evaluation's memory stays flat in the number of items (128 MiB of float32 scores; its bool temporaries
# are a quarter of that each).
MAX_SCORES = 1 << 25


def query_hits(emb: np.ndarray, q: np.ndarray, t: np.ndarray, k: int, chunk: int = 2048,
               item_bias: np.ndarray | None = None, ranks: Ranks = ONE_PROCESS) -> np.ndarray:
    """(Q,) float64: for each query q[i] with answer t[i], whether the answer is among the k items with the
    highest score to the query (inner product, + item_bias[item] when given), the query itself excluded. Ties
    are broken at random, in expectation: an answer with `better` items above it and `tied` items level with it
    counts min(1, max(0, k - better) / (tied + 1)). emb: (N, D) float32; q, t: (Q,) item_idx; item_bias: (N,).

    Queries are scored `chunk` at a time (fewer when chunk x N would pass MAX_SCORES). ranks: in a world of
    several (every rank calls this with the same arguments), each rank scores a contiguous range of the chunks
    and the parts are gathered in rank order: every rank returns the one-process array exactly."""
    if len(q) == 0:
        return np.zeros(0)
    e = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
    bias = None if item_bias is None else torch.from_numpy(np.asarray(item_bias, dtype=np.float32))
    chunk = max(1, min(chunk, MAX_SCORES // max(1, len(e))))

    def chunk_hits(s: int) -> np.ndarray:
        qq, tt = torch.from_numpy(q[s : s + chunk]), torch.from_numpy(t[s : s + chunk])
        scores = e[qq] @ e.T
        if bias is not None:
            scores = scores + bias[None, :]
        rows = torch.arange(len(qq))
        scores[rows, qq] = -torch.inf
        target = scores[rows, tt]
        better = (scores > target[:, None]).sum(1).double()
        tied = (scores == target[:, None]).sum(1).double() - 1  # the answer itself is level with itself
        return ((k - better).clamp(min=0) / (tied + 1)).clamp(max=1).numpy()

    mine = [chunk_hits(s) for s in ranks.mine(range(0, len(q), chunk))]
    return np.concatenate([h for part in ranks.all_parts(mine) for h in part])


def recall_at_k(emb: np.ndarray, a: np.ndarray, b: np.ndarray, k: int, chunk: int = 2048,
                item_bias: np.ndarray | None = None, ranks: Ranks = ONE_PROCESS) -> float:
    """Held-out pair recall@k, both directions: the mean of `query_hits` over the queries (a->b, b->a).
    emb: (N, D) float32; a, b: (P,) item_idx; item_bias: (N,) or None; ranks: see query_hits."""
    q, t = np.concatenate([a, b]), np.concatenate([b, a])
    return float(query_hits(emb, q, t, k, chunk, item_bias, ranks).mean()) if len(q) else float("nan")


def recall_interval(pair_hits: np.ndarray, z: float = 1.96) -> tuple[float, float] | None:
    """95% normal interval of a recall from pair_hits: (P,) float, each pair's mean over its two directions: the
    held-out pairs are the seeded sample, so the pair is the unit and its two directions stay together.
    None with fewer than two pairs."""
    if len(pair_hits) < 2:
        return None
    m, se = float(pair_hits.mean()), float(pair_hits.std(ddof=1) / np.sqrt(len(pair_hits)))
    return (m - z * se, m + z * se)


def pair_recall(emb: np.ndarray, pairs: np.ndarray, sources: np.ndarray, k: int,
                item_bias: np.ndarray | None = None, ranks: Ranks = ONE_PROCESS) -> PairRecall:
    """recall_at_k overall and per source, with the overall recall's 95% interval over pairs (recall_interval),
    from ONE scoring of the pairs' queries. emb: (N, D); pairs: (P, 2) item_idx; sources: (P,) str; item_bias:
    (N,) or None; ranks: the split of the queries over the ranks (see query_hits)."""
    if not len(pairs):
        return PairRecall(None)
    a, b = pairs[:, 0], pairs[:, 1]
    hits = query_hits(emb, np.concatenate([a, b]), np.concatenate([b, a]), k, item_bias=item_bias, ranks=ranks)
    per_pair = (hits[: len(pairs)] + hits[len(pairs) :]) / 2

    def rec(m: np.ndarray) -> float | None:
        return float(per_pair[m].mean()) if m.any() else None

    return PairRecall(float(per_pair.mean()), *(rec(sources == s) for s in SOURCES),
                      overall_ci95=recall_interval(per_pair))


def pair_counts(pairs: np.ndarray, n_items: int) -> np.ndarray:
    """(N,) int64: in how many of `pairs` (P, 2) each item occurs."""
    return np.bincount(pairs.reshape(-1), minlength=n_items).astype(np.int64)


def references(
    pairs: np.ndarray,
    sources: np.ndarray,
    embeddings: Mapping[str, np.ndarray],
    *,
    k: int = 10,
    split: str = "item",
    popularity: np.ndarray | None = None,
    what: Mapping[str, str] | None = None,
    ranks: Ranks = ONE_PROCESS,
) -> AlignReferences:
    """Recall@k of several embeddings on the same held-out pairs, overall and per source.

    pairs: (P, 2) held-out item_idx pairs (PairSplit.test); sources: (P,) str; embeddings: name -> (N, D_name)
    in display order ("frozen", "aligned", "u2i", "probe", ...); popularity: (N,) training pair counts, adds a
    "popularity" row (every query ranks items by log(1 + count)); what: name -> description (defaults: WHAT);
    ranks: the split of the queries over the ranks (recall_at_k; every rank returns the same table).
    """
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(sources) != len(pairs):
        raise QarmError(f"references: pairs must be (P, 2) with P sources; got {pairs.shape}, {len(sources)}")
    desc = WHAT | dict(what or {})
    rows = [ReferenceRow(name, desc.get(name, name), pair_recall(e, pairs, sources, k, ranks=ranks))
            for name, e in embeddings.items()]
    if popularity is not None:
        n = len(popularity)
        bias = np.log1p(np.asarray(popularity, dtype=np.float64)).astype(np.float32)
        rows.append(ReferenceRow("popularity", desc["popularity"],
                                 pair_recall(np.zeros((n, 1), np.float32), pairs, sources, k, item_bias=bias,
                                             ranks=ranks)))
    return AlignReferences(k=k, split=split, n_pairs=len(pairs), n_pairs_u2i=int((sources == "u2i").sum()),
                           n_pairs_i2i=int((sources == "i2i").sum()), rows=tuple(rows))
