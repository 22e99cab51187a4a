"""VQ codes: each item's top-k nearest items in the aligned space (QARM §3.3, k = 25 in the paper).

The item pool is its own codebook (V = M), so a VQ code is k item_idx values in 0..N-1.

Rule (reference.reference_topk is the slow definition): score = inner product ("ip", larger is nearer)
or squared L2 ("l2", smaller is nearer), computed exactly in float64; best first; equal scores ordered by
lower item_idx; exclude_self drops the item's own row only (identical embeddings of *other* items stay).
Fast path: a flat faiss index returns k + 1 + margin candidates per item; they are rescored exactly and
a row is accepted only when its k-th score is separated from the last candidate's by more than twice
faiss's float32 error bound; other rows are searched again with 4x the candidates (up to all N).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from qarm.errors import QarmError
from qarm.quantize import faiss_utils
from qarm.quantize.faiss_utils import GpuChoice
from qarm.quantize.reference import exact_ip, exact_sq_l2

_EPS32 = 2.0**-23
_CHUNK_FLOATS = 1 << 22  # rows x candidates x d float64 values per rescoring chunk (32 MiB)


def _error_bound(x: np.ndarray, metric: str) -> np.ndarray:
    """Per-row bound on |faiss float32 score - exact score| (x4 slack over the BLAS rounding bound)."""
    sq = (x.astype(np.float64) ** 2).sum(1)
    d = x.shape[1]
    if metric == "ip":
        return 4.0 * (d + 3) * _EPS32 * np.sqrt(sq * sq.max())
    return 4.0 * (d + 3) * _EPS32 * (sq + sq.max())


def _rank_candidates(x: np.ndarray, rows: np.ndarray, cand: np.ndarray, metric: str,
                     exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """Exact keys (smaller = nearer) of candidates `cand: (n, c)` of `rows`, sorted by (key, item_idx)."""
    cand = np.sort(cand.astype(np.int64), axis=1)  # item_idx order first, so a stable sort keeps ties by index
    key = np.empty(cand.shape, dtype=np.float64)
    step = max(1, _CHUNK_FLOATS // (cand.shape[1] * x.shape[1]))
    for s in range(0, rows.size, step):
        q = x[rows[s:s + step]][:, None, :]
        c = x[cand[s:s + step]]
        key[s:s + step] = -exact_ip(q, c) if metric == "ip" else exact_sq_l2(q, c)
    if exclude_self:
        key[cand == rows[:, None]] = np.inf
    order = np.argsort(key, axis=1, kind="stable")
    take = np.arange(rows.size)[:, None]
    return cand[take, order], key[take, order]


def topk_neighbours(x: np.ndarray, k: int, *, rows: np.ndarray | None = None, exclude_self: bool = True,
                    metric: Literal["ip", "l2"] = "ip", gpu: GpuChoice = "auto",
                    candidates: np.ndarray | None = None) -> np.ndarray:
    """Exact top-k neighbours (the module's rule) of the items `rows` (default: all) among the items
    `candidates` (default: all N).

    x: (N, d) float32; rows: (n,) item_idx; candidates: (C,) item_idx -> (n, k) int64 item_idx, best first.
    """
    x = faiss_utils.as_float32_matrix(x)
    n = x.shape[0]
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise QarmError(f"k must be an int >= 1, got {k!r}")
    if metric not in ("ip", "l2"):
        raise QarmError(f"metric must be 'ip' or 'l2', got {metric!r}")
    pool = np.arange(n) if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
    if pool.size and (pool[0] < 0 or pool[-1] >= n):
        raise QarmError(f"candidates must be item_idx in [0, {n}), got values in [{pool[0]}, {pool[-1]}]")
    m = pool.size
    available = m - 1 if exclude_self else m
    if k > available:
        raise QarmError(f"k={k} neighbours requested but only {available} exist among {m} candidate items "
                        f"(exclude_self={exclude_self}); use k <= {available}")
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    index = faiss_utils.flat_index(x.shape[1], metric, use_gpu=faiss_utils.resolve_gpu(gpu))
    index.add(np.ascontiguousarray(x[pool]))
    bound = _error_bound(x, metric)[rows]
    out = np.empty((rows.size, k), dtype=np.int64)
    todo = np.arange(rows.size)  # positions in `rows` still to certify
    ncand = min(m, k + 1 + max(8, k // 2))
    while todo.size:
        _, pos = index.search(x[rows[todo]], ncand)
        ranked, key = _rank_candidates(x, rows[todo], pool[pos], metric, exclude_self)
        out[todo] = ranked[:, :k]
        if ncand == m:
            break
        # Any non-candidate is at least as far (by faiss) as every candidate, so exactly it is no nearer than
        # the farthest candidate's exact key minus 2 bounds; the k-th must be strictly nearer than that.
        last = np.where(np.isinf(key), -np.inf, key).max(1)
        certified = last - key[:, k - 1] > 2.0 * bound[todo]
        todo = todo[~certified]
        ncand = min(m, ncand * 4)
    return out


def vq_codes(x: np.ndarray, k: int = 25, *, exclude_self: bool = True, metric: Literal["ip", "l2"] = "ip",
             gpu: GpuChoice = "auto", candidates: np.ndarray | None = None) -> np.ndarray:
    """Top-k neighbour codes. x: (N, d) float32 aligned embeddings -> (N, k) int64 item_idx, best first.

    candidates: (C,) item_idx the neighbours are drawn from (the benchmark passes the items with a training
    impression, so every neighbour id in a VQ bag has a trained embedding row); default all N.
    Raises QarmError when fewer than k neighbours exist: padding would invent ids that the ranker's VQ
    embedding table would learn as real neighbours.
    """
    return topk_neighbours(x, k, exclude_self=exclude_self, metric=metric, gpu=gpu, candidates=candidates)
