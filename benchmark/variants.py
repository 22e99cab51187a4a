"""Item-side feature variants, chosen per benchmark cell by name, and `build_features`.

| variant           | item id | RQ codes | VQ codes | content vector | content source |
|-------------------|---------|----------|----------|----------------|----------------|
| id_only           | yes     |          |          |                |                |
| frozen_dense      | yes     |          |          | yes            | frozen encoder |
| frozen_codes      | yes     | yes      |          |                | frozen encoder |
| aligned_dense     | yes     |          |          | yes            | aligned        |
| aligned_codes     | yes     | yes      |          |                | aligned (QARM) |
| aligned_codes_vq  | yes     | yes      | yes      |                | aligned        |
| codes_only        | no      | yes      |          |                | aligned        |

The variant says which arrays are used; the caller passes the arrays of its `content_source`
(codes/dense from the frozen encoder or from the aligned one). Arrays a variant does not use are
ignored. codes_only has no item-id table, so every item, cold ones included, is scored from codes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import torch

from benchmark.errors import ConfigError, DataError
from recsys_models.features import FeatureSet, FeatureSpec, RankBatch, build_batch


@dataclass(frozen=True)
class Variant:
    name: str
    item_id: bool
    codes: bool
    vq: bool
    dense: bool
    content_source: Literal["frozen", "aligned"] | None
    description: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("id_only", True, False, False, False, None, "item/user ids only (baseline)"),
        Variant("frozen_dense", True, False, False, True, "frozen", "frozen encoder embedding as a dense feature"),
        Variant("frozen_codes", True, True, False, False, "frozen", "RQ codes of the frozen embedding"),
        Variant("aligned_dense", True, False, False, True, "aligned", "aligned embedding as a dense feature"),
        Variant("aligned_codes", True, True, False, False, "aligned", "RQ codes of the aligned embedding (QARM)"),
        Variant("aligned_codes_vq", True, True, True, False, "aligned", "RQ + VQ codes of the aligned embedding"),
        Variant("codes_only", False, True, False, False, "aligned", "aligned RQ codes, no item-id table"),
    )
}


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ConfigError(f"variant: unknown {name!r}; expected one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def encode_user_features(
    users: pl.DataFrame, n_users: int, columns: Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[tuple[str, int], ...]]:
    """Categorical user columns -> (n_users, F) int64 indices and (name, cardinality) per column.

    Index 0 is "missing" (null or a user absent from the frame); values get 1.. in sorted order, so
    the encoding does not depend on row order. columns=None takes every Utf8/Categorical column.
    """
    if "user_idx" not in users.columns:
        raise DataError("users frame: missing column 'user_idx'")
    if columns is None:
        columns = [c for c, t in users.schema.items() if c != "user_idx" and t in (pl.Utf8, pl.Categorical)]
    table = np.zeros((n_users, len(columns)), dtype=np.int64)
    features: list[tuple[str, int]] = []
    idx = users["user_idx"].to_numpy().astype(np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= n_users):
        raise DataError(f"users frame: user_idx must lie in [0, {n_users})")
    for j, col in enumerate(columns):
        if col not in users.columns:
            raise DataError(f"users frame: missing user feature column {col!r}")
        values = users[col].cast(pl.Utf8)
        categories = sorted(v for v in values.unique().to_list() if v is not None)
        lookup = {v: i + 1 for i, v in enumerate(categories)}
        table[idx, j] = np.array([lookup.get(v, 0) if v is not None else 0 for v in values.to_list()], dtype=np.int64)
        features.append((col, len(categories) + 1))
    return table, tuple(features)


def _tensor(name: str, a: np.ndarray | torch.Tensor | None, dtype: torch.dtype, variant: str) -> torch.Tensor:
    if a is None:
        raise DataError(f"{name}: variant {variant!r} needs it, got None")
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    if t.ndim != 2:
        raise DataError(f"{name}: expected a 2-d array, got shape {tuple(t.shape)}")
    return t.to(dtype).contiguous()


def build_features(
    variant: str,
    *,
    n_items: int,
    n_users: int,
    embedding_dim: int = 16,
    users: pl.DataFrame | None = None,
    user_columns: Sequence[str] | None = None,
    codes: np.ndarray | torch.Tensor | None = None,
    codebook_size: int | None = None,
    vq_codes: np.ndarray | torch.Tensor | None = None,
    dense: np.ndarray | torch.Tensor | None = None,
) -> FeatureSet:
    """Feature set of one variant. codes: (N, L) int64 in [0, K); vq_codes: (N, k) int64 item indices;
    dense: (N, d) float32 content vectors; users: `user_idx` + categorical columns (optional).
    codebook_size defaults to codes.max() + 1."""
    v = get_variant(variant)
    user_table, user_features = None, ()
    if users is not None:
        table, user_features = encode_user_features(users, n_users, user_columns)
        user_table = torch.from_numpy(table) if user_features else None
    c = _tensor("codes", codes, torch.int64, variant) if v.codes else None
    vq = _tensor("vq_codes", vq_codes, torch.int64, variant) if v.vq else None
    content = _tensor("dense", dense, torch.float32, variant) if v.dense else None
    k = 0
    if c is not None:
        k = codebook_size if codebook_size is not None else int(c.max()) + 1
    spec = FeatureSpec(
        n_items=n_items,
        n_users=n_users,
        embedding_dim=embedding_dim,
        item_id=v.item_id,
        user_features=user_features,
        rq_levels=c.shape[1] if c is not None else 0,
        rq_codebook_size=k,
        vq_k=vq.shape[1] if vq is not None else 0,
        dense_dim=content.shape[1] if content is not None else 0,
    )
    return FeatureSet(spec=spec, user_table=user_table, codes=c, vq_codes=vq, content=content)


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
            raise DataError(f"{name} frame: missing column {col!r}; expected {', '.join(SPLIT_COLUMNS)}")
    hist_col = frame["hist_item_idx"].list.tail(max_hist)
    lens = hist_col.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = hist_col.explode().drop_nulls().to_numpy().astype(np.int64)
    if flat.size != lens.sum():
        raise DataError(f"{name} frame: hist_item_idx holds null items")
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
            raise DataError(f"{name} frame: {col} must lie in [0, {bound})")
    labels = frame["label"].to_numpy().astype(np.float32)
    if labels.size and not np.isin(labels, (0.0, 1.0)).all():
        raise DataError(f"{name} frame: label must be 0 or 1")
    return SplitArrays(
        user_idx=torch.from_numpy(users),
        item_idx=torch.from_numpy(items),
        labels=torch.from_numpy(labels),
        hist=torch.from_numpy(hist),
        hist_len=torch.from_numpy(lens),
    )


def iter_batches(
    fs: FeatureSet, arrays: SplitArrays, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[RankBatch]:
    """RankBatches of `batch_size` rows, shuffled by `generator` (None: in order). Each batch's history
    is cut to its own longest row, so short-history batches cost less."""
    n = len(arrays)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        hist_len = arrays.hist_len[idx]
        t = max(1, int(hist_len.max()))
        yield build_batch(
            fs, arrays.user_idx[idx], arrays.item_idx[idx], arrays.hist[idx, :t], hist_len, arrays.labels[idx]
        )
