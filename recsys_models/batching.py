"""Batching of impression rows for the rankers: a split frame -> tensors once, then shuffled `RankBatch`es.

    frame (polars): user_idx, item_idx, label, hist_item_idx (List, oldest first)
      -> split_arrays -> SplitArrays (n rows; hist (n, T) left-aligned, 0 beyond hist_len)
      -> iter_batches -> RankBatch per B rows (recsys_models.features.build_batch), history cut to the
         batch's own longest row
    distributed: batch_rows (the global batch, same generator on every rank) -> rank_batch (this rank's
         contiguous part, the same shape on every rank) -> RankBatch
"""

from __future__ import annotations

from collections.abc import Iterator
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

    user_idx, item_idx: (n,) int64.  labels: (n,) float32.  hist: (n, T) int64, the latest T positives,
    left-aligned OLDEST FIRST (most recent at hist_len - 1), 0 beyond hist_len.  hist_len: (n,) int64.
    """

    user_idx: torch.Tensor
    item_idx: torch.Tensor
    labels: torch.Tensor
    hist: torch.Tensor
    hist_len: torch.Tensor

    def __len__(self) -> int:
        return int(self.user_idx.shape[0])


SPLIT_COLUMNS = ("user_idx", "item_idx", "label", "hist_item_idx")


def split_arrays(frame: pl.DataFrame, *, max_hist: int, n_items: int, n_users: int, name: str = "split") -> SplitArrays:
    """frame: one row per impression with user_idx, item_idx, label, hist_item_idx (List, oldest first).

    Keeps the latest `max_hist` history items of each row.
    """
    for col in SPLIT_COLUMNS:
        if col not in frame.columns:
            raise RecsysModelError(f"{name} frame: missing column {col!r}; expected {', '.join(SPLIT_COLUMNS)}")
    hist_col = frame["hist_item_idx"].list.tail(max_hist)
    lens = hist_col.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = hist_col.explode().drop_nulls().to_numpy().astype(np.int64)
    if flat.size != lens.sum():
        raise RecsysModelError(f"{name} frame: hist_item_idx holds null items")
    n = frame.height
    t = max(1, int(lens.max()) if n else 1)
    hist = np.zeros((n, t), dtype=np.int64)
    rows = np.repeat(np.arange(n), lens)
    starts = np.repeat(np.cumsum(lens) - lens, lens)
    hist[rows, np.arange(flat.size) - starts] = flat
    users = frame["user_idx"].to_numpy().astype(np.int64)
    items = frame["item_idx"].to_numpy().astype(np.int64)
    for col, arr, bound in (("user_idx", users, n_users), ("item_idx", items, n_items), ("hist_item_idx", flat, n_items)):
        if arr.size and (arr.min() < 0 or arr.max() >= bound):
            raise RecsysModelError(f"{name} frame: {col} must lie in [0, {bound})")
    labels = frame["label"].to_numpy().astype(np.float32)
    if labels.size and not np.isin(labels, (0.0, 1.0)).all():
        raise RecsysModelError(f"{name} frame: label must be 0 or 1")
    return SplitArrays(
        user_idx=torch.from_numpy(users),
        item_idx=torch.from_numpy(items),
        labels=torch.from_numpy(labels),
        hist=torch.from_numpy(hist),
        hist_len=torch.from_numpy(lens),
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
    hist_len = arrays.hist_len[idx]
    t = width if width is not None else (max(1, int(hist_len.max())) if len(idx) else 1)
    return build_batch(fs, arrays.user_idx[idx], arrays.item_idx[idx], arrays.hist[idx, :t], hist_len.clamp(max=t),
                       arrays.labels[idx], layout, dedup=dedup)


def rank_batch(fs: FeatureSet, arrays: SplitArrays, idx: torch.Tensor, layout: Layout, rank: int,
               world: int) -> tuple[RankBatch, torch.Tensor, torch.Tensor]:
    """This rank's part of the global batch idx (B,) for a sharded ranker: (batch, its rows (B_r,) padded as in
    `rank_rows`, their real-row mask (B_r,) bool). Every rank's batch has the same shape: B_r rows, and in the
    sequence layout the global batch's history width with one item bag per position (dedup=False), so the
    per-item KJT is B_r (1 + T) bags on every rank."""
    part, real = rank_rows(idx, rank, world)
    if layout == "pooled":
        return batch_of(fs, arrays, part, layout), part, real
    width = max(1, int(arrays.hist_len[idx].max())) if len(idx) else 1
    return batch_of(fs, arrays, part, layout, width=width, dedup=False), part, real


def iter_batches(
    fs: FeatureSet, arrays: SplitArrays, batch_size: int, generator: torch.Generator | None = None,
    layout: Layout = "pooled",
) -> Iterator[RankBatch]:
    """RankBatches of `batch_size` rows in `layout` (pooled: DLRM; sequence: DIN, SIM), shuffled by `generator`
    (None: in order). Each batch's history is cut to its own longest row, so short-history batches cost less."""
    for idx in batch_rows(len(arrays), batch_size, generator):
        yield batch_of(fs, arrays, idx, layout)
