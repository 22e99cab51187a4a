"""Slow numpy references for the fast (faiss) paths. They define the exact rules; tests check the fast paths.

Glossary: N items, d embedding dim, L levels, K codebook size, k neighbours.

Scores are computed in float64 by one elementwise expression summed over the last (contiguous) axis;
the fast paths rescore their faiss candidates with the same helpers, so both sides see bit-identical
numbers and the tie rule (lowest index wins) decides equal scores the same way.
"""

from __future__ import annotations

import numpy as np


def exact_sq_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared L2 distance over the last axis, float64: `sum((a - b) ** 2, -1)`; a (..., d) and b (..., d)
    broadcast against each other."""
    diff = a.astype(np.float64, copy=False) - b.astype(np.float64, copy=False)
    return (diff * diff).sum(-1)


def exact_ip(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Inner product over the last axis, float64: `sum(a * b, -1)`; a (..., d) and b (..., d) broadcast."""
    return (a.astype(np.float64, copy=False) * b.astype(np.float64, copy=False)).sum(-1)


def reference_rq_encode(x: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """Residual encoding, one item at a time (QARM §3.3; docs/codes.md).

    `r_l = argmin_k ||m^{l-1} - R^l_k||^2` (lowest k on ties), `m^l = m^{l-1} - R^l_{r_l}` in float32,
    `m^0 = x`. x: (N, d) float32, codebooks: (L, K, d) float32 -> codes: (N, L) int64.
    """
    x = np.asarray(x, dtype=np.float32)
    codebooks = np.asarray(codebooks, dtype=np.float32)
    n_levels = codebooks.shape[0]
    codes = np.zeros((x.shape[0], n_levels), dtype=np.int64)
    for i in range(x.shape[0]):
        m = x[i].copy()
        for level in range(n_levels):
            dist = exact_sq_l2(m[None, :], codebooks[level])  # (K,)
            r = int(np.argmin(dist))  # np.argmin returns the first minimum: lowest k on ties
            codes[i, level] = r
            m = m - codebooks[level, r]
    return codes


def reference_residuals(x: np.ndarray, codebooks: np.ndarray, codes: np.ndarray) -> list[np.ndarray]:
    """Residuals m^1..m^L (each (N, d) float32) of `x: (N, d)` under `codes: (N, L)` and `codebooks: (L, K, d)`,
    by the same float32 rule."""
    m = np.asarray(x, dtype=np.float32).copy()
    out = []
    for level in range(codes.shape[1]):
        m = m - codebooks[level][codes[:, level]]
        out.append(m.copy())
    return out


def reference_topk(x: np.ndarray, k: int, *, exclude_self: bool = True, metric: str = "ip") -> np.ndarray:
    """Brute-force top-k neighbours, one item at a time. x: (N, d) -> (N, k) int64 item_idx.

    Order: best score first (largest inner product for "ip", smallest squared L2 for "l2"); equal scores
    by lower item_idx. exclude_self drops the item's own row (other items with an identical embedding
    stay: they are genuine neighbours).
    """
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    out = np.zeros((n, k), dtype=np.int64)
    idx = np.arange(n)
    for i in range(n):
        key = -exact_ip(x[i][None, :], x) if metric == "ip" else exact_sq_l2(x[i][None, :], x)
        order = np.lexsort((idx, key))  # primary: key ascending; ties: lower index
        if exclude_self:
            order = order[order != i]
        out[i] = order[:k]
    return out
