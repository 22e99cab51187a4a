"""Per-impression history: the user's latest T positive item_idx strictly before the impression's ts
(`build_history`, ours), and RecBole 1.2.1's any-label history (`build_history_recbole`, the peer's).

    impressions (user_idx, ts)          positives of that user, ordered by (ts, item_idx)
    row r: u=3, ts=100        ->        [.. p_k (ts 40), p_k+1 (ts 90)] | p (ts 100, excluded: not strictly before)
    hist_item_idx[r] = the last T of them, OLDEST FIRST, most recent LAST

Ties in ts among positives are ordered by item_idx (deterministic); a positive at the same ts as the
impression is never included (nothing from the future, nor the present). QARM §3 and docs/data.md:
T = 50 latest positives.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

CHUNK = 1_000_000  # impressions per chunk: bounds the gather index arrays (T * CHUNK int64 at most)


def build_history(user: np.ndarray, ts: np.ndarray, item: np.ndarray, label: np.ndarray, T: int) -> pl.Series:
    """Vectorised history for every impression.

    user, ts, item, label: (M,) arrays of the impressions (any order); the positive pool is the rows
    with label == 1. Returns a List(Int32) Series of length M aligned with the input rows.
    """
    m = user.size
    if m == 0 or T <= 0:
        return pl.Series("hist_item_idx", [[]] * m, dtype=pl.List(pl.Int32))
    # Dense-rank the timestamps so (user, ts) packs into one int64 key without overflow.
    uniq, ts_rank = np.unique(ts, return_inverse=True)
    key = user.astype(np.int64) * np.int64(uniq.size) + ts_rank.astype(np.int64)
    pos = label == 1
    order = np.lexsort((item[pos], key[pos]))
    pkey, pitem = key[pos][order], item[pos][order].astype(np.int32)
    puser = user[pos][order]
    parts = []
    for a in range(0, m, CHUNK):
        b = min(m, a + CHUNK)
        end = np.searchsorted(pkey, key[a:b], side="left")  # positives with a smaller (user, ts) key
        first = np.searchsorted(puser, user[a:b], side="left")  # the user's first positive
        start = np.maximum(first, end - T)
        lengths = np.maximum(end - start, 0)
        offsets = np.zeros(b - a + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        idx = np.repeat(start - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        arr = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(pitem[idx], type=pa.int32()))
        parts.append(pl.Series("hist_item_idx", arr))
    return pl.concat(parts).cast(pl.List(pl.Int32))


def build_history_slow(user: np.ndarray, ts: np.ndarray, item: np.ndarray, label: np.ndarray,
                       T: int) -> list[list[int]]:
    """Per-row reference of `build_history` (tests only): O(M * positives per user)."""
    by_user: dict[int, list[tuple[int, int]]] = {}
    for u, t, i, y in zip(user.tolist(), ts.tolist(), item.tolist(), label.tolist()):
        if y == 1:
            by_user.setdefault(u, []).append((t, i))
    out = []
    for u, t in zip(user.tolist(), ts.tolist()):
        before = sorted(p for p in by_user.get(u, []) if p[0] < t)
        out.append([i for _, i in before[-T:]] if T > 0 else [])
    return out


def build_history_recbole(user: np.ndarray, ts: np.ndarray, item: np.ndarray, T: int) -> pl.Series:
    """RecBole 1.2.1's sequential history: for every row, the user's up to T rows just before it in
    (user, ts, item) order, of ANY label, oldest first.

    This is `SequentialDataset.data_augmentation` (recbole/data/dataset/sequential_dataset.py) on one
    .inter file holding all rows: a stable sort by (user, time), then row i's item_id_list = the items
    of the user's rows [max(first, i - T), i). Our recbole export writes every split sorted by
    (user_idx, ts, item_idx) and the splits are temporal, so the file order RecBole's stable sort keeps
    among equal timestamps is item_idx order. Differences from `build_history`: negatives count, and a
    row at the SAME ts as the impression is included when its item_idx is smaller. (RecBole also drops
    each user's first row as a sample; here it stays, with an empty history.)

    user, ts, item: (M,) arrays of ALL rows (train, val and test together), any order; returns a
    List(Int32) Series of item values aligned with the input rows.
    """
    m = user.size
    if m == 0 or T <= 0:
        return pl.Series("hist_item_idx", [[]] * m, dtype=pl.List(pl.Int32))
    order = np.lexsort((item, ts, user))
    u_sorted = user[order]
    pos = np.arange(m, dtype=np.int64)
    first = np.searchsorted(u_sorted, u_sorted, side="left")  # each sorted row's user's first row
    start = np.maximum(first, pos - T)
    lengths = pos - start
    offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    idx = np.repeat(start - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
    sorted_items = item[order].astype(np.int32)
    arr = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(sorted_items[idx], type=pa.int32()))
    hist_sorted = pl.Series("hist_item_idx", arr).cast(pl.List(pl.Int32))
    inverse = np.empty(m, dtype=np.int64)
    inverse[order] = np.arange(m)
    return hist_sorted.gather(inverse)


def build_history_recbole_slow(user: np.ndarray, ts: np.ndarray, item: np.ndarray, T: int) -> list[list[int]]:
    """Per-row reference of `build_history_recbole` (tests only)."""
    rows = list(zip(user.tolist(), ts.tolist(), item.tolist()))
    out = []
    for u, t, i in rows:
        before = sorted((t2, i2) for u2, t2, i2 in rows if u2 == u and (t2, i2) < (t, i))
        out.append([i2 for _, i2 in before[-T:]] if T > 0 else [])
    return out
