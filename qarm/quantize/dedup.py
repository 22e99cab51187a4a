"""Collision handling: TIGER's dedup suffix (Rajput et al. 2023, §3.1: "(12,24,52,0) and (12,24,52,1)").

An extra last level holds the item's rank among the items that share its L-level code, in item_idx
order, so every (L+1)-level code is unique. Its vocabulary size is `dedup_vocab_size(codes)`.
"""

from __future__ import annotations

import numpy as np

from qarm.errors import QarmError


def _check_codes(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] < 1:
        raise QarmError(f"codes must be a 2-d (N, L) array with L >= 1, got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise QarmError(f"codes must be integers, got dtype {codes.dtype}")
    return codes.astype(np.int64, copy=False)


def add_dedup_level(codes: np.ndarray) -> np.ndarray:
    """`codes: (N, L) int64` -> `(N, L+1) int64`; the last column is the rank of the item (by item_idx)
    among items with the same L-level code: 0 for the first, 1 for the second, ...
    """
    codes = _check_codes(codes)
    n = codes.shape[0]
    if n == 0:
        return np.zeros((0, codes.shape[1] + 1), dtype=np.int64)
    # Sort by the code columns, then item_idx (np.lexsort: last key is primary), so equal codes are
    # contiguous and ordered by item_idx.
    order = np.lexsort((np.arange(n),) + tuple(codes[:, j] for j in reversed(range(codes.shape[1]))))
    sorted_codes = codes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (sorted_codes[1:] != sorted_codes[:-1]).any(1)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    return np.concatenate([codes, rank[:, None]], axis=1)


def dedup_vocab_size(codes_with_dedup: np.ndarray) -> int:
    """Size of the dedup level's vocabulary: the largest group of shared codes (max suffix + 1).
    codes_with_dedup: (N, L + 1) int64 from `add_dedup_level`."""
    codes = _check_codes(codes_with_dedup)
    return int(codes[:, -1].max()) + 1 if codes.shape[0] else 0
