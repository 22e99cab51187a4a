"""Batching of impression rows for the rankers: a split frame -> jagged arrays once, then shuffled `RankBatch`es.

    frame (polars): user_idx, item_idx, label, hist_item_idx (List, oldest first)
      -> split_arrays -> SplitArrays (n rows; the histories as ONE int32 jagged array, values + offsets)
      -> iter_batches -> RankBatch per B rows (recsys_models.features.build_batch); each batch's history is
         padded to (B, T_b) int64 there, T_b = the batch's own longest row

The histories are never padded per split: at 10M rows x T = 50 a padded int64 (n, T) frame is 4 GB per
split, while the jagged int32 values hold only the real entries (4 bytes each) plus 8 bytes of offset per row.
Jagged layout of 3 rows with histories [2, 3], [] and [4] (oldest first)::

    hist_values   [2, 3, 4]          (H,) int32, row r's history is values[offsets[r]:offsets[r + 1]]
    hist_offsets  [0, 2, 2, 3]       (n + 1,) int64
    padded (B=3)  [[2, 3], [0, 0], [4, 0]]   built per batch by `pad_histories` (0 beyond hist_len)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import torch

from recsys_models.errors import RecsysModelError
from recsys_models.features import FeatureSet, Layout, RankBatch, build_batch


@dataclass(frozen=True, eq=False)
class SplitArrays:
    """A split frame as tensors, built once per split (vectorised; no per-row Python).

    user_idx, item_idx: (n,) int64.  labels: (n,) float32.
    hist_values: (H,) int32, every row's latest positives back to back, each row OLDEST FIRST.
    hist_offsets: (n + 1,) int64, row r's history is hist_values[hist_offsets[r] : hist_offsets[r + 1]].
    """

    user_idx: torch.Tensor
    item_idx: torch.Tensor
    labels: torch.Tensor
    hist_values: torch.Tensor
    hist_offsets: torch.Tensor

    def __len__(self) -> int:
        return int(self.user_idx.shape[0])

    @property
    def hist_len(self) -> torch.Tensor:
        """(n,) int64 history length of every row."""
        return self.hist_offsets[1:] - self.hist_offsets[:-1]

    def histories(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rows: (B,) int64 -> (hist (B, T_b) int64 left-aligned, 0 beyond hist_len; hist_len (B,) int64)."""
        return pad_histories(self.hist_values, self.hist_offsets, rows)

    def nbytes(self) -> int:
        """Bytes held by the tensors (what a split costs in memory)."""
        return sum(t.numel() * t.element_size() for t in (self.user_idx, self.item_idx, self.labels,
                                                          self.hist_values, self.hist_offsets))


def pad_histories(values: torch.Tensor, offsets: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectorised padding of jagged rows. values: (H,) int32; offsets: (n + 1,) int64; rows: (B,) int64.

    Returns hist (B, T_b) int64, row b's history left-aligned (oldest first) and 0 beyond its length, with
    T_b = max(1, the longest selected row); and hist_len (B,) int64."""
    start = offsets[rows]
    hist_len = offsets[rows + 1] - start
    t = max(1, int(hist_len.max())) if rows.numel() else 1
    pos = torch.arange(t, dtype=torch.int64)
    mask = pos[None, :] < hist_len[:, None]
    hist = torch.zeros((rows.shape[0], t), dtype=torch.int64)
    hist[mask] = values[(start[:, None] + pos[None, :])[mask]].long()
    return hist, hist_len


def pad_histories_reference(values: Sequence[int], offsets: Sequence[int], rows: Sequence[int]) -> list[list[int]]:
    """Per-row reference of `pad_histories` (tests only): the padded rows as lists, width max(1, longest)."""
    picked = [list(values[offsets[r] : offsets[r + 1]]) for r in rows]
    t = max([1, *(len(h) for h in picked)])
    return [[int(v) for v in h] + [0] * (t - len(h)) for h in picked]


SPLIT_COLUMNS = ("user_idx", "item_idx", "label", "hist_item_idx")


def _jagged(hist: pl.Series, max_hist: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """List column -> (values (H,) of the column's integer type, offsets (n + 1,) int64), the latest `max_hist` of each row; a null list
    counts as empty. Reads the Arrow buffers: no exploded frame, and `list.tail` only when some row is longer."""
    lens = hist.list.len().fill_null(0)
    if hist.len() and int(lens.max() or 0) > max_hist:
        hist = hist.list.tail(max_hist)
    arr = hist.rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    flat = pc.list_flatten(arr)  # honours slicing, drops null lists
    if flat.null_count:
        raise RecsysModelError(f"{name} frame: hist_item_idx holds null items")
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return flat.to_numpy(zero_copy_only=False), offsets


def split_arrays(frame: pl.DataFrame, *, max_hist: int, n_items: int, n_users: int, name: str = "split") -> SplitArrays:
    """frame: one row per impression with user_idx, item_idx, label, hist_item_idx (List, oldest first).

    Keeps the latest `max_hist` history items of each row, as int32 jagged arrays (see the module docstring).
    """
    for col in SPLIT_COLUMNS:
        if col not in frame.columns:
            raise RecsysModelError(f"{name} frame: missing column {col!r}; expected {', '.join(SPLIT_COLUMNS)}")
    values, offsets = _jagged(frame["hist_item_idx"], max_hist, name)
    users = frame["user_idx"].to_numpy().astype(np.int64)
    items = frame["item_idx"].to_numpy().astype(np.int64)
    for col, arr, bound in (("user_idx", users, n_users), ("item_idx", items, n_items),
                            ("hist_item_idx", values, n_items)):
        if arr.size and (arr.min() < 0 or arr.max() >= bound):
            raise RecsysModelError(f"{name} frame: {col} must lie in [0, {bound})")
    labels = frame["label"].to_numpy().astype(np.float32)
    if labels.size and not np.isin(labels, (0.0, 1.0)).all():
        raise RecsysModelError(f"{name} frame: label must be 0 or 1")
    return SplitArrays(
        user_idx=torch.from_numpy(users),
        item_idx=torch.from_numpy(items),
        labels=torch.from_numpy(labels),
        hist_values=torch.from_numpy(values.astype(np.int32)),  # in [0, n_items): fits; astype copies (writable)
        hist_offsets=torch.from_numpy(offsets),
    )


def iter_batches(
    fs: FeatureSet, arrays: SplitArrays, batch_size: int, generator: torch.Generator | None = None,
    layout: Layout = "pooled",
) -> Iterator[RankBatch]:
    """RankBatches of `batch_size` rows in `layout` (pooled: DLRM; sequence: DIN, SIM), shuffled by `generator`
    (None: in order). Each batch's history is padded to its own longest row, so short-history batches cost less."""
    n = len(arrays)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        hist, hist_len = arrays.histories(idx)
        yield build_batch(fs, arrays.user_idx[idx], arrays.item_idx[idx], hist, hist_len, arrays.labels[idx], layout)
