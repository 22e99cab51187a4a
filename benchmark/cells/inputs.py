"""One benchmark cell's inputs: the variant's feature set and everything train_cell reads.

    benchmark.cells.plan.plan_cell(...) -> CellPlan   decided before anything runs (no torch)
    cell_inputs(plan, item side) -> CellInputs     split frames + recsys_models FeatureSet + SIM's search unit

Item fields a variant may read (recsys_models.features.ItemField): the item id (t_item, N rows); the codes
(one field per RQ level, t_rq_<l> with the code set's vocabulary, or the VQ top-k bag); the VQ bag (its tokens
are item ids, so it shares t_item when the item id is a feature, else its own t_vq); item metadata (one field
per categorical item column: a single value, or a bag for list columns such as MovieLens genres).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch

from benchmark.cells.plan import CellPlan
from benchmark.config.variants import get_variant
from benchmark.core.errors import DataError
from benchmark.itemside.runner import ItemSide
from qarm.quantize.config import TokenizeConfig
from recsys_models.features import ITEM, FeatureSet, FeatureSpec, ItemField

METADATA_COLUMNS = ("category", "year", "genres")  # categorical item columns a `metadata` variant reads
USER_ID_COLUMNS = ("user_idx", "user_id")  # identifiers, never categorical features (user_idx has its table)


def encode_user_features(
    users: pl.DataFrame, n_users: int, columns: Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[tuple[str, int], ...]]:
    """Categorical user columns -> (n_users, F) int64 indices and (name, cardinality) per column.

    Index 0 is "missing" (null or a user absent from the frame); values get 1.. in sorted order, so the
    encoding does not depend on row order. columns=None takes every Utf8/Categorical column except the
    identifiers (user_idx, user_id): the user id has its own table already.
    """
    if "user_idx" not in users.columns:
        raise DataError("users frame: missing column 'user_idx'")
    if columns is None:
        columns = [c for c, t in users.schema.items() if c not in USER_ID_COLUMNS and t in (pl.Utf8, pl.Categorical)]
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


def encode_item_fields(items: pl.DataFrame, columns: Sequence[str] = METADATA_COLUMNS) -> dict[str, np.ndarray]:
    """Categorical item columns -> per column (N, m) int64 category ids padded with -1, ids 0.. in sorted order.

    A Utf8 column gives one id per item (m = 1; a null or "" gives none); a List(Utf8) column gives a bag
    (genres). Columns absent from the frame, or without any value, are skipped. Rows follow `items.item_idx`.
    """
    out: dict[str, np.ndarray] = {}
    order = items["item_idx"].to_numpy()
    n = items.height
    for col in columns:
        if col not in items.columns:
            continue
        series = items[col]
        lists = series if isinstance(series.dtype, pl.List) else series.cast(pl.Utf8).map_elements(
            lambda v: [v] if v else [], return_dtype=pl.List(pl.Utf8))
        rows = [[x for x in (r or []) if x] for r in lists.to_list()]
        cats = sorted({x for r in rows for x in r})
        if not cats:
            continue
        lookup = {c: i for i, c in enumerate(cats)}
        m = max(len(r) for r in rows)
        tokens = np.full((n, m), -1, dtype=np.int64)
        for pos, r in zip(order, rows):
            tokens[pos, : len(r)] = [lookup[x] for x in r]
        out[col] = tokens
    return out


def _as_tokens(name: str, a: np.ndarray | torch.Tensor | None, variant: str) -> torch.Tensor:
    if a is None:
        raise DataError(f"{name}: variant {variant!r} needs it, got None")
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    if t.ndim != 2:
        raise DataError(f"{name}: expected a 2-d array, got shape {tuple(t.shape)}")
    return t.to(torch.int64).contiguous()


def build_features(
    variant: str,
    *,
    n_items: int,
    n_users: int,
    embedding_dim: int = 16,
    users: pl.DataFrame | None = None,
    codes: np.ndarray | torch.Tensor | None = None,
    vocab_sizes: Sequence[int] | None = None,
    code_kind: str = "rq",
    tokenization: TokenizeConfig | None = None,
    train_items: np.ndarray | None = None,
    reference_codes: np.ndarray | None = None,
    vq_codes: np.ndarray | torch.Tensor | None = None,
    dense: np.ndarray | torch.Tensor | None = None,
    item_fields: dict[str, np.ndarray] | None = None,
) -> FeatureSet:
    """Feature set of one variant. codes: (N, L) int64, level l in [0, vocab_sizes[l]) (code_kind "rq",
    tokenised by `tokenization`: one field per token table, default unigram = one per level) or (N, k) item_idx
    (code_kind "vq": the top-k bag); train_items: (N,) bool, the items with a training impression (SentencePiece
    trains on their codes); reference_codes: (N, L) int64, the codes whose fitted tokenizer `codes` are
    tokenised with (a control's: the aligned codes, so that under "spm" the control's table has the aligned
    codes' rows instead of a SentencePiece model of its own; the other schemes' tables depend on the vocabulary
    only); vq_codes: (N, k) int64 item_idx, the extra VQ bag; dense: (N, d) float32 content
    vectors; users: `user_idx` + categorical columns; item_fields: name -> (N, m) int64 category ids padded with
    -1 (see `encode_item_fields`). vocab_sizes default to each level's max + 1."""
    v = get_variant(variant)
    user_table, user_features = None, ()
    if users is not None:
        table, user_features = encode_user_features(users, n_users)
        user_table = torch.from_numpy(table) if user_features else None
    fields: list[ItemField] = []
    tokens: dict[str, torch.Tensor] = {}

    def add(field: ItemField, toks: torch.Tensor) -> None:
        fields.append(field)
        tokens[field.name] = toks

    if v.item_id:
        add(ItemField(ITEM, "t_item", n_items), torch.arange(n_items, dtype=torch.int64)[:, None])
    bag_table = "t_item" if v.item_id else "t_vq"  # VQ tokens are item ids: they share the item-id table
    if v.codes:
        c = _as_tokens("codes", codes, variant)
        if code_kind == "vq":
            add(ItemField("vq", bag_table, n_items, c.shape[1]), c)
        else:
            from qarm.quantize.tokenize import tokenize_codes

            sizes = list(vocab_sizes) if vocab_sizes is not None else [int(v) + 1 for v in c.max(0).values]
            train = np.ones(n_items, dtype=bool) if train_items is None else np.asarray(train_items, dtype=bool)
            tcfg = tokenization or TokenizeConfig()
            fitted = None
            if reference_codes is not None and tcfg.scheme == "spm":
                fitted = tokenize_codes(np.asarray(reference_codes, dtype=np.int64), sizes, train, tcfg).spm_model
            tables = tokenize_codes(c.numpy(), sizes, train, tcfg, spm_model=fitted)
            for t in tables.tables:
                add(ItemField(t.name, f"t_{t.name}", t.rows, t.width), torch.from_numpy(t.tokens.astype(np.int64)))
    if v.vq and "vq" not in tokens:
        c = _as_tokens("vq_codes", vq_codes, variant)
        add(ItemField("vq", bag_table, n_items, c.shape[1]), c)
    if v.metadata:
        if not item_fields:
            raise DataError(f"variant {variant!r}: the dataset has no categorical item fields "
                            f"({', '.join(METADATA_COLUMNS)})")
        for name, arr in item_fields.items():
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64))
            add(ItemField(f"meta_{name}", f"t_meta_{name}", max(int(t.max()) + 1, 1), t.shape[1]), t)
    content = None
    if v.dense:
        content = torch.as_tensor(np.asarray(dense) if not isinstance(dense, torch.Tensor) else dense)
        if dense is None or content.ndim != 2:
            raise DataError(f"dense: variant {variant!r} needs (N, d) content vectors")
        content = content.to(torch.float32).contiguous()
    spec = FeatureSpec(n_items=n_items, n_users=n_users, embedding_dim=embedding_dim, user_features=user_features,
                       item_fields=tuple(fields), dense_dim=0 if content is None else content.shape[1])
    return FeatureSet(spec=spec, item_tokens=tokens, user_table=user_table, content=content)


# ---- a planned cell's inputs ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CellInputs:
    """Everything train_cell needs: the split frames, the items frame (is_cold, pop_bucket), the feature set,
    SIM's search unit as the plan decided it ("hard" / "soft"; None for other models) and, for hard search, the
    codes it matches on ((N, L_s) int64)."""

    train: pl.DataFrame
    val: pl.DataFrame
    test: pl.DataFrame
    items: pl.DataFrame
    features: FeatureSet
    search_codes: torch.Tensor | None
    sim_search: str | None = None


def control_codes(codes: np.ndarray, vocab_sizes: Sequence[int], control: str, seed: int,
                  kind: str = "rq") -> np.ndarray:
    """The codes controls, from the aligned codes (N, L) with vocab_sizes[l] values at level l: "random" draws
    every code uniformly in [0, vocab_sizes[l]) (same shape and vocabulary, no content); "shuffled" permutes the
    rows across items (same codes, wrong items). kind "vq": codes are (N, k) bags of item_idx, and "random"
    draws a bag of k item ids uniformly in [0, N) per item (the same bag size as the aligned VQ codes). Seeded by
    the replicate seed."""
    rng = np.random.default_rng([seed, 0xC0DE])
    if control == "random" and kind == "vq":
        return rng.integers(0, codes.shape[0], size=codes.shape, dtype=np.int64)
    if control == "random":
        cols = [rng.integers(0, k, size=codes.shape[0], dtype=np.int64) for k in vocab_sizes]
        return np.stack(cols, axis=1) if cols else codes.copy()
    if control == "shuffled":
        return codes[rng.permutation(codes.shape[0])]
    raise ValueError(f"unknown codes control {control!r}")


def cell_inputs(plan: CellPlan, side: ItemSide, embedding_dim: int,
                tokens: TokenizeConfig | None = None) -> CellInputs:
    """Assemble a planned cell's inputs from one replicate's item side; `tokens`: how RQ codes become token
    tables (quantize.tokens)."""
    prepared = side.data
    code_sets = side.codes
    cs = code_sets[plan.code_set] if plan.code_set else None
    codes = None if cs is None else cs.codes
    if cs is not None and plan.control:
        codes = control_codes(cs.codes, cs.vocab_sizes, plan.control, plan.replicate_seed, cs.kind)
    dense = None
    if plan.dense_source == "frozen":
        dense = side.frozen.frozen_embeddings()
    elif plan.dense_source == "aligned":
        assert side.align is not None, "the plan reads the aligned embedding: its item side must hold it"
        dense = side.align.embeddings
    fs = build_features(plan.variant, n_items=prepared.items.height, n_users=n_users_of(prepared),
                        embedding_dim=embedding_dim, users=prepared.users, codes=codes,
                        vocab_sizes=None if cs is None else cs.vocab_sizes, code_kind="rq" if cs is None else cs.kind,
                        tokenization=tokens, train_items=~prepared.items["is_cold"].to_numpy(),
                        reference_codes=cs.codes if cs is not None and plan.control else None,
                        vq_codes=code_sets[plan.vq_set].codes if plan.vq_set else None, dense=dense,
                        item_fields=encode_item_fields(prepared.items) if plan.metadata else None)
    search = torch.from_numpy(code_sets[plan.sim_search_codes].codes) if plan.sim_search_codes else None
    return CellInputs(prepared.train, prepared.val, prepared.test, prepared.items, fs, search, plan.sim_search)


def n_users_of(prepared: Any) -> int:
    """Rows of the user tables: one past the largest user_idx of any split or the users frame."""
    frames = (prepared.train, prepared.val, prepared.test)
    mx = max(int(f["user_idx"].max() or 0) if f.height else 0 for f in frames)
    if prepared.users is not None and prepared.users.height:
        mx = max(mx, int(prepared.users["user_idx"].max()))
    return mx + 1
