"""Feature specs -> TorchRec table configs, and KeyedJaggedTensor batch builders.

One impression row carries: the user (id + categorical features), the target item (id, RQ codes
one feature per level, VQ codes as a multi-valued bag, frozen or aligned content vector) and the
user's history of positives (item ids and their RQ codes, jagged; OLDEST FIRST, most recent last).

KJT layout built by `build_kjt` for a batch of B = 2 rows, spec with item ids and L = 1 RQ level
(history lengths 2 and 0)::

    key            row 0        row 1      lengths
    user_idx       [u0]         [u1]       1, 1
    item_idx       [i0]         [i1]       1, 1
    hist_item_idx  [h00, h01]   []         2, 0
    rq_0           [c(i0)]      [c(i1)]    1, 1
    hist_rq_0      [c(h00), c(h01)] []     2, 0

Tables (QARM §1.5, anchors.md): the target and its history share one table per kind, so the
item-id table serves `item_idx` and `hist_item_idx`, and RQ level l's table (K rows) serves
`rq_l` and `hist_rq_l`. The VQ table has N rows (VQ codes are item indices of nearest items).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchrec.modules.embedding_configs import EmbeddingBagConfig, EmbeddingConfig, PoolingType
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys_models.errors import RecsysModelError

USER = "user_idx"
ITEM = "item_idx"
HIST_ITEM = "hist_item_idx"
VQ = "vq"


def user_key(name: str) -> str:
    """KJT key of the categorical user feature `name`."""
    return f"user_{name}"


def rq_key(level: int) -> str:
    """KJT key of the target item's RQ code at `level` (0-based)."""
    return f"rq_{level}"


def hist_rq_key(level: int) -> str:
    """KJT key of the history items' RQ codes at `level` (0-based)."""
    return f"hist_rq_{level}"


@dataclass(frozen=True)
class FeatureSpec:
    """Which sparse and dense features a ranker sees. Every table has `embedding_dim` columns.

    user_features: (name, cardinality) per categorical user feature (ML-100K: age, gender, occupation).
    rq_levels / rq_codebook_size: L and K of the RQ codes; 0 = no code features.
    vq_k: VQ codes per item (k); 0 = no VQ feature.  dense_dim: d of the content vector; 0 = none.
    item_id: False for codes_only (no item-id table at all, so cold items are scorable).
    """

    n_items: int
    n_users: int
    embedding_dim: int = 16
    item_id: bool = True
    user_features: tuple[tuple[str, int], ...] = ()
    rq_levels: int = 0
    rq_codebook_size: int = 0
    vq_k: int = 0
    dense_dim: int = 0

    def __post_init__(self) -> None:
        for name in ("n_items", "n_users", "embedding_dim"):
            if getattr(self, name) <= 0:
                raise RecsysModelError(f"FeatureSpec.{name} must be > 0, got {getattr(self, name)}")
        if (self.rq_levels > 0) != (self.rq_codebook_size > 0):
            raise RecsysModelError(
                f"FeatureSpec: rq_levels ({self.rq_levels}) and rq_codebook_size ({self.rq_codebook_size}) "
                "must both be > 0 or both 0"
            )
        if not self.item_id and self.rq_levels == 0:
            raise RecsysModelError("FeatureSpec: without item ids the RQ codes are the only item feature; rq_levels=0")
        for name, card in self.user_features:
            if card <= 0:
                raise RecsysModelError(f"FeatureSpec.user_features[{name!r}]: cardinality must be > 0, got {card}")

    @property
    def dense_in_features(self) -> int:
        """Width of `RankBatch.dense`: a constant 1 (DLRM needs a dense input) + target + history-mean content."""
        return 1 + 2 * self.dense_dim

    def sequence_pairs(self) -> list[tuple[str, str, str, int]]:
        """(table, target key, history key, rows) for each item-side table shared by target and history."""
        pairs = [("t_item", ITEM, HIST_ITEM, self.n_items)] if self.item_id else []
        pairs += [(f"t_rq_{lv}", rq_key(lv), hist_rq_key(lv), self.rq_codebook_size) for lv in range(self.rq_levels)]
        return pairs

    def context_tables(self) -> list[tuple[str, str, int]]:
        """(table, key, rows) of the pooled non-sequence features: user id, user features, VQ bag."""
        tables = [("t_user", USER, self.n_users)]
        tables += [(f"t_{user_key(n)}", user_key(n), c) for n, c in self.user_features]
        if self.vq_k > 0:
            tables.append(("t_vq", VQ, self.n_items))
        return tables

    def kjt_keys(self) -> list[str]:
        """KJT keys in builder order: context keys, then (target, history) per sequence table."""
        out = [key for _, key, _ in self.context_tables()]
        for _, target, hist, _ in self.sequence_pairs():
            out += [target, hist]
        return out


def embedding_bag_configs(spec: FeatureSpec) -> list[EmbeddingBagConfig]:
    """All tables pooled (DLRM). MEAN pooling: a one-id target is its embedding, history is its mean."""
    configs = [
        EmbeddingBagConfig(name=t, embedding_dim=spec.embedding_dim, num_embeddings=rows, feature_names=[k],
                           pooling=PoolingType.MEAN)
        for t, k, rows in spec.context_tables()
    ]
    configs += [
        EmbeddingBagConfig(name=t, embedding_dim=spec.embedding_dim, num_embeddings=rows, feature_names=[tk, hk],
                           pooling=PoolingType.MEAN)
        for t, tk, hk, rows in spec.sequence_pairs()
    ]
    return configs


def context_bag_configs(spec: FeatureSpec) -> list[EmbeddingBagConfig]:
    """Pooled user-side and VQ tables for the sequence models (DIN, SIM)."""
    return [
        EmbeddingBagConfig(name=t, embedding_dim=spec.embedding_dim, num_embeddings=rows, feature_names=[k],
                           pooling=PoolingType.MEAN)
        for t, k, rows in spec.context_tables()
    ]


def sequence_configs(spec: FeatureSpec) -> list[EmbeddingConfig]:
    """Unpooled item-side tables (EmbeddingCollection) shared by the target and its history (DIN, SIM)."""
    return [
        EmbeddingConfig(name=t, embedding_dim=spec.embedding_dim, num_embeddings=rows, feature_names=[tk, hk])
        for t, tk, hk, rows in spec.sequence_pairs()
    ]


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """A spec plus the lookup arrays the batch builders read.

    user_table: (n_users, F_u) int64, category index of each user feature (F_u = len(spec.user_features)).
    codes: (N, L) int64 in [0, K).  vq_codes: (N, k) int64 in [0, N).  content: (N, d) float32.
    """

    spec: FeatureSpec
    user_table: torch.Tensor | None = None
    codes: torch.Tensor | None = None
    vq_codes: torch.Tensor | None = None
    content: torch.Tensor | None = None

    def __post_init__(self) -> None:
        s = self.spec
        _check("user_table", self.user_table, (s.n_users, len(s.user_features)), torch.int64, bool(s.user_features))
        _check("codes", self.codes, (s.n_items, s.rq_levels), torch.int64, s.rq_levels > 0)
        _check("vq_codes", self.vq_codes, (s.n_items, s.vq_k), torch.int64, s.vq_k > 0)
        _check("content", self.content, (s.n_items, s.dense_dim), torch.float32, s.dense_dim > 0)
        if self.codes is not None and self.codes.numel() and (
            int(self.codes.min()) < 0 or int(self.codes.max()) >= s.rq_codebook_size
        ):
            raise RecsysModelError(f"codes: values must lie in [0, {s.rq_codebook_size})")
        if self.vq_codes is not None and self.vq_codes.numel() and (
            int(self.vq_codes.min()) < 0 or int(self.vq_codes.max()) >= s.n_items
        ):
            raise RecsysModelError(f"vq_codes: values must be item indices in [0, {s.n_items})")
        if self.user_table is not None:
            for j, (name, card) in enumerate(s.user_features):
                col = self.user_table[:, j]
                if col.numel() and (int(col.min()) < 0 or int(col.max()) >= card):
                    raise RecsysModelError(f"user_table[:, {j}] ({name!r}): values must lie in [0, {card})")


def _check(name: str, t: torch.Tensor | None, shape: tuple[int, int], dtype: torch.dtype, needed: bool) -> None:
    if not needed:
        if t is not None:
            raise RecsysModelError(f"{name}: given but the spec does not use it (expected None)")
        return
    if t is None:
        raise RecsysModelError(f"{name}: the spec needs it, expected a {dtype} tensor of shape {shape}")
    if tuple(t.shape) != shape or t.dtype != dtype:
        raise RecsysModelError(f"{name}: expected {dtype} of shape {shape}, got {t.dtype} of shape {tuple(t.shape)}")


@dataclass
class RankBatch:
    """Model input for B impressions (history padded to T, left-aligned, most recent at hist_len - 1).

    sparse: KJT with `spec.kjt_keys()`.  dense: (B, spec.dense_in_features) float32.  labels: (B,) float32.
    item_idx: (B,) int64.  hist: (B, T) int64, 0 beyond hist_len.  hist_len: (B,) int64.
    """

    sparse: KeyedJaggedTensor
    dense: torch.Tensor
    labels: torch.Tensor
    item_idx: torch.Tensor
    hist: torch.Tensor
    hist_len: torch.Tensor

    def to(self, device: torch.device) -> RankBatch:
        """The same batch on `device` (a no-op when it is already there)."""
        if self.labels.device == device:
            return self
        return RankBatch(self.sparse.to(device), self.dense.to(device), self.labels.to(device),
                         self.item_idx.to(device), self.hist.to(device), self.hist_len.to(device))


def history_mask(hist_len: torch.Tensor, t: int) -> torch.Tensor:
    """hist_len: (B,) lengths -> (B, T) bool, True at valid (left-aligned) positions."""
    return torch.arange(t, device=hist_len.device)[None, :] < hist_len[:, None]


def build_kjt(
    fs: FeatureSet, user_idx: torch.Tensor, item_idx: torch.Tensor, hist: torch.Tensor, hist_len: torch.Tensor
) -> KeyedJaggedTensor:
    """Vectorised KJT builder. user_idx, item_idx, hist_len: (B,) int64; hist: (B, T) int64 left-aligned."""
    spec = fs.spec
    b = user_idx.shape[0]
    mask = history_mask(hist_len, hist.shape[1])
    hist_vals = hist[mask]  # row-major, so row 0's history then row 1's: the jagged order
    ones = torch.ones(b, dtype=torch.int64)
    values: list[torch.Tensor] = [user_idx]
    lengths: list[torch.Tensor] = [ones]
    for j in range(len(spec.user_features)):
        assert fs.user_table is not None
        values.append(fs.user_table[user_idx, j])
        lengths.append(ones)
    if spec.vq_k > 0:
        assert fs.vq_codes is not None
        values.append(fs.vq_codes[item_idx].reshape(-1))
        lengths.append(torch.full((b,), spec.vq_k, dtype=torch.int64))
    if spec.item_id:
        values += [item_idx, hist_vals]
        lengths += [ones, hist_len]
    if spec.rq_levels > 0:
        assert fs.codes is not None
        target_codes, hist_codes = fs.codes[item_idx], fs.codes[hist_vals]
        for lv in range(spec.rq_levels):
            values += [target_codes[:, lv], hist_codes[:, lv]]
            lengths += [ones, hist_len]
    return KeyedJaggedTensor(keys=spec.kjt_keys(), values=torch.cat(values), lengths=torch.cat(lengths))


def build_kjt_reference(fs: FeatureSet, rows: Sequence[tuple[int, int, Sequence[int]]]) -> KeyedJaggedTensor:
    """Per-row reference of `build_kjt`: rows are (user_idx, item_idx, history item_idx list)."""
    spec = fs.spec
    per_key: dict[str, list[list[int]]] = {k: [] for k in spec.kjt_keys()}
    for user, item, history in rows:
        per_key[USER].append([user])
        for j, (name, _) in enumerate(spec.user_features):
            assert fs.user_table is not None
            per_key[user_key(name)].append([int(fs.user_table[user, j])])
        if spec.vq_k > 0:
            assert fs.vq_codes is not None
            per_key[VQ].append([int(v) for v in fs.vq_codes[item]])
        if spec.item_id:
            per_key[ITEM].append([item])
            per_key[HIST_ITEM].append(list(history))
        for lv in range(spec.rq_levels):
            assert fs.codes is not None
            per_key[rq_key(lv)].append([int(fs.codes[item, lv])])
            per_key[hist_rq_key(lv)].append([int(fs.codes[h, lv]) for h in history])
    values = [v for k in spec.kjt_keys() for row in per_key[k] for v in row]
    lengths = [len(row) for k in spec.kjt_keys() for row in per_key[k]]
    return KeyedJaggedTensor(
        keys=spec.kjt_keys(), values=torch.tensor(values, dtype=torch.int64), lengths=torch.tensor(lengths, dtype=torch.int64)
    )


def build_dense(fs: FeatureSet, item_idx: torch.Tensor, hist: torch.Tensor, hist_len: torch.Tensor) -> torch.Tensor:
    """item_idx (B,), hist (B, T), hist_len (B,) -> (B, 1 + 2d) float32: [1, content[target], mean of
    content[history]] (zeros for an empty history)."""
    ones = torch.ones(item_idx.shape[0], 1)
    if fs.content is None:
        return ones
    # Mean over each row's valid history as one embedding_bag: never materialises (B, T, d).
    mask = history_mask(hist_len, hist.shape[1])
    offsets = torch.cumsum(hist_len, 0) - hist_len
    hist_mean = F.embedding_bag(hist[mask], fs.content, offsets.long(), mode="sum")
    hist_mean = hist_mean / hist_len.clamp(min=1).unsqueeze(-1).to(hist_mean.dtype)
    return torch.cat([ones, fs.content[item_idx], hist_mean], dim=1)


def build_batch(
    fs: FeatureSet,
    user_idx: torch.Tensor,
    item_idx: torch.Tensor,
    hist: torch.Tensor,
    hist_len: torch.Tensor,
    labels: torch.Tensor,
) -> RankBatch:
    """Everything a ranker needs for B rows: user_idx, item_idx, hist_len, labels (B,); hist (B, T) int64
    left-aligned (shapes as in `RankBatch`)."""
    return RankBatch(
        sparse=build_kjt(fs, user_idx, item_idx, hist, hist_len),
        dense=build_dense(fs, item_idx, hist, hist_len),
        labels=labels.float(),
        item_idx=item_idx,
        hist=hist,
        hist_len=hist_len,
    )
