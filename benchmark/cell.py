"""One benchmark cell's inputs: the variant's feature set (build_features) and everything train_cell reads.

    benchmark.stages.plan_cell(...) -> CellPlan      decided before anything runs (no torch)
    cell_inputs(plan, item side) -> CellInputs       split frames + recsys_models FeatureSet + SIM search codes
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch

from benchmark.errors import DataError
from benchmark.stages import CellPlan
from benchmark.variants import get_variant
from recsys_models.config import TrainConfig
from recsys_models.features import FeatureSet, FeatureSpec


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




# ---- what a cell reads, and its key ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CellInputs:
    """Everything train_cell needs: the split frames, the items frame (is_cold, pop_bucket), the feature set
    and, for SIM's hard search, the codes it matches on ((N, L_s) int64)."""

    train: pl.DataFrame
    val: pl.DataFrame
    test: pl.DataFrame
    items: pl.DataFrame
    features: FeatureSet
    search_codes: torch.Tensor | None


def cell_inputs(plan: CellPlan, side: dict[str, Any], embedding_dim: int) -> CellInputs:
    """Assemble a planned cell's inputs from one replicate's item side (run_item_side's artifacts)."""
    prepared = side["data"]
    codes = side["codes"]
    rq = codes[plan.code_set] if plan.code_set else None
    dense = None
    if plan.dense_source == "frozen":
        dense = side["frozen"].frozen_embeddings()
    elif plan.dense_source == "aligned":
        dense = side["align"].embeddings
    n_items = prepared.items.height
    n_users = n_users_of(prepared)
    fs = build_features(plan.variant, n_items=n_items, n_users=n_users, embedding_dim=embedding_dim,
                        users=prepared.users, codes=None if rq is None else rq.codes,
                        codebook_size=None if rq is None else rq.vocab,
                        vq_codes=codes[plan.vq_set].codes if plan.vq_set else None, dense=dense)
    search = torch.from_numpy(codes[plan.sim_search_codes].codes) if plan.sim_search_codes else None
    return CellInputs(prepared.train, prepared.val, prepared.test, prepared.items, fs, search)


def n_users_of(prepared: Any) -> int:
    """Rows of the user tables: one past the largest user_idx of any split or the users frame."""
    frames = (prepared.train, prepared.val, prepared.test)
    mx = max(int(f["user_idx"].max() or 0) if f.height else 0 for f in frames)
    if prepared.users is not None and prepared.users.height:
        mx = max(mx, int(prepared.users["user_idx"].max()))
    return mx + 1


def rank_config(cfg: TrainConfig, plan: CellPlan) -> TrainConfig:
    """The [rank] settings a planned cell trains with: SIM's search mode as the plan decided it."""
    if plan.sim_search is None or plan.sim_search == cfg.sim.search:
        return cfg
    return dataclasses.replace(cfg, sim=dataclasses.replace(cfg.sim, search=plan.sim_search))
