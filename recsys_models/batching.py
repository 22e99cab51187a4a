"""Batching of impression rows for the rankers: a split frame -> jagged arrays once, then shuffled `RankBatch`es.

    frame (polars): user_idx, item_idx, label, hist_item_idx (List, oldest first)
      -> split_arrays -> SplitArrays (n rows; the histories as ONE int32 jagged array, values + offsets)
      -> iter_batches -> RankBatch per B rows (recsys_models.features.build_batch); each batch's history is
         padded to (B, T_b) int64 there, T_b = the batch's own longest row
    distributed: batch_rows (the global batch, same generator on every rank) -> rank_batch (this rank's
         contiguous part, the same shape on every rank) -> RankBatch

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
from typing import TYPE_CHECKING

import numpy as np
import torch

from recsys_models.errors import RecsysModelError
from recsys_models.features import FeatureSet, Layout, RankBatch, build_batch

if TYPE_CHECKING:  # frames arrive built; batching itself needs no polars (scripts/gpu_check.py runs without it)
    import polars as pl

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

    def histories(self, rows: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """rows: (B,) int64 -> (hist (B, T_b) int64 left-aligned, 0 beyond hist_len; hist_len (B,) int64);
        T_b = width, default the longest selected row (`pad_histories`)."""
        return pad_histories(self.hist_values, self.hist_offsets, rows, width)

    @classmethod
    def from_padded(cls, user_idx: torch.Tensor, item_idx: torch.Tensor, labels: torch.Tensor, hist: torch.Tensor,
                    hist_len: torch.Tensor) -> SplitArrays:
        """From padded histories (tests, benchmarks): user_idx, item_idx (n,) int64; labels (n,) float32;
        hist (n, T) int64 left-aligned oldest first; hist_len (n,) int64."""
        mask = torch.arange(hist.shape[1])[None, :] < hist_len[:, None]
        offsets = torch.zeros(len(hist_len) + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(hist_len, 0)
        return cls(user_idx, item_idx, labels, hist[mask].to(torch.int32), offsets)

    def nbytes(self) -> int:
        """Bytes held by the tensors (what a split costs in memory)."""
        return sum(t.numel() * t.element_size() for t in (self.user_idx, self.item_idx, self.labels,
                                                          self.hist_values, self.hist_offsets))


def pad_histories(values: torch.Tensor, offsets: torch.Tensor, rows: torch.Tensor,
                  width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectorised padding of jagged rows. values: (H,) int32; offsets: (n + 1,) int64; rows: (B,) int64.

    Returns hist (B, T_b) int64, row b's history left-aligned (oldest first) and 0 beyond its length, with
    T_b = `width`, default max(1, the longest selected row) (a longer row keeps its first T_b); and
    hist_len (B,) int64, at most T_b."""
    start = offsets[rows]
    hist_len = offsets[rows + 1] - start
    t = width if width is not None else (max(1, int(hist_len.max())) if rows.numel() else 1)
    hist_len = hist_len.clamp(max=t)
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
    """List column -> (values (H,) of the column's integer type, offsets (n + 1,) int64), the latest `max_hist`
    of each row; a null list counts as empty. Reads the Arrow buffers: no exploded frame, and `list.tail` only when some row is longer."""
    import pyarrow as pa
    import pyarrow.compute as pc

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


def batch_rows(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Row indices (B,) int64 of each batch of a split of n rows, shuffled by `generator` (None: in order)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)


def rank_rows(idx: torch.Tensor, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's contiguous part of a global batch's rows idx (B,), padded to ceil(B / world) rows, and a
    mask (ceil(B / world),) bool of its real rows. The real rows of ranks 0..world-1 concatenated are the global
    batch (`torch.tensor_split`: part sizes differ by at most one). Padding rows (copies of idx[0], to weigh
    zero) keep every rank's batch the same size, as TorchRec's row-wise sharding needs, and never empty: every
    rank runs every step (the sharded tables' collectives) and sequence tables cannot take an empty batch."""
    part = idx.tensor_split(world)[rank]
    width = -(-len(idx) // world)
    real = torch.arange(width) < len(part)
    return torch.cat([part, idx[:1].expand(width - len(part))]), real


def batch_of(fs: FeatureSet, arrays: SplitArrays, idx: torch.Tensor, layout: Layout = "pooled",
             width: int | None = None, dedup: bool = True) -> RankBatch:
    """The RankBatch of rows idx (B,) of a split in `layout`, its history cut to `width` positions (default: the
    batch's own longest row, at least 1). dedup=False (sequence layout): one item bag per position instead of per
    distinct item, so the per-item KJT's size depends only on B and the width (equal on every rank of a sharded
    model when they pass the global batch's width)."""
    hist, hist_len = arrays.histories(idx, width)
    return build_batch(fs, arrays.user_idx[idx], arrays.item_idx[idx], hist, hist_len, arrays.labels[idx], layout,
                       dedup=dedup)


def rank_batch(fs: FeatureSet, arrays: SplitArrays, idx: torch.Tensor, layout: Layout, rank: int,
               world: int) -> tuple[RankBatch, torch.Tensor, torch.Tensor]:
    """This rank's part of the global batch idx (B,) for a sharded ranker: (batch, its rows (B_r,) padded as in
    `rank_rows`, their real-row mask (B_r,) bool). Every rank's batch has the same shape: B_r rows, and in the
    sequence layout the global batch's history width with one item bag per position (dedup=False), so the
    per-item KJT is B_r (1 + T) bags on every rank. The batch carries this rank's share of the global batch's
    mean loss (`loss_mask` = the real rows, `loss_scale` = world / B: recsys_models.sharding.global_mean_bce)."""
    part, real = rank_rows(idx, rank, world)
    if layout == "pooled":
        batch = batch_of(fs, arrays, part, layout)
    else:
        width = max(1, int(arrays.hist_len[idx].max())) if len(idx) else 1
        batch = batch_of(fs, arrays, part, layout, width=width, dedup=False)
    batch.loss_mask, batch.loss_scale = real, world / max(len(idx), 1)
    return batch, part, real


def iter_batches(
    fs: FeatureSet, arrays: SplitArrays, batch_size: int, generator: torch.Generator | None = None,
    layout: Layout = "pooled",
) -> Iterator[RankBatch]:
    """RankBatches of `batch_size` rows in `layout` (pooled: DLRM; sequence: DIN, SIM), shuffled by `generator`
    (None: in order). Each batch's history is padded to its own longest row, so short-history batches cost less."""
    for idx in batch_rows(len(arrays), batch_size, generator):
        yield batch_of(fs, arrays, idx, layout)
