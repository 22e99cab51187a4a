"""Feature specs -> TorchRec table configs, and the KeyedJaggedTensor batch builders.

One impression row carries: the user (id + categorical features), the target item and the user's history of
positives (OLDEST FIRST, most recent last), each item described by its **item fields** and optionally a
content vector. An item field is a bag of token ids per item embedded in one table and MEAN-pooled:

    field          tokens of item i                 table (rows)
    item           [i]                              t_item (N)
    rq_l           [codes[i, l]]                    t_rq_l (K)          one per RQ level (unigram)
    ngram_l ...    hashed prefix / bigram / pieces  their own tables    code tokenisations
    vq             [the k nearest items of i]       t_item (shared: its tokens are item ids)
    year, genres   [year id], [genre ids]           t_year, t_genres    item metadata

Tokens are stored per field as (N, m) int64, padded with -1 (an item may have fewer than m tokens, or none).

Two batch layouts (`build_batch(..., layout=)`):
- "pooled" (DLRM): a KJT with the context keys, then per field the target's bag (`<field>`) and the bag of
  every token of every history item (`hist_<field>`), both mean-pooled by an EmbeddingBagCollection. For a
  batch of B = 2 rows, fields item and rq_0, history lengths 2 and 0::

      key            row 0                 row 1      lengths
      user_idx       [u0]                  [u1]       1, 1
      item           [i0]                  [i1]       1, 1
      hist_item      [h00, h01]            []         2, 0
      rq_0           [c(i0)]               [c(i1)]    1, 1
      hist_rq_0      [c(h00), c(h01)]      []         2, 0

- "sequence" (DIN, SIM): the context KJT, plus `items`: a KJT over the U distinct items of the batch (target
  and history), one key per field, each item's bag; `target_pos` (B,) and `hist_pos` (B, T) index those U
  items, so every item representation is pooled once per batch and gathered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from torchrec.streamable import Pipelineable

from recsys_models.errors import RecsysModelError

USER = "user_idx"
ITEM = "item"
Layout = Literal["pooled", "sequence"]


def user_key(name: str) -> str:
    """KJT key of the categorical user feature `name`."""
    return f"user_{name}"


def hist_key(field: str) -> str:
    """KJT key of the history bag of item field `field` (pooled layout)."""
    return f"hist_{field}"


@dataclass(frozen=True)
class ItemField:
    """An item-side sparse feature: per item a bag of at most `max_len` token ids in [0, rows), embedded in
    table `table` and mean-pooled. Fields naming the same table share it (and must agree on its rows)."""

    name: str
    table: str
    rows: int
    max_len: int = 1


@dataclass(frozen=True)
class FeatureSpec:
    """Which sparse and dense features a ranker sees. Every table has `embedding_dim` columns.

    user_features: (name, cardinality) per categorical user feature (ML-100K: age, gender, occupation).
    item_fields: the item-side sparse features (at least one: an item must be representable).
    dense_dim: d of the content vector; 0 = none.
    """

    n_items: int
    n_users: int
    embedding_dim: int = 16
    user_features: tuple[tuple[str, int], ...] = ()
    item_fields: tuple[ItemField, ...] = ()
    dense_dim: int = 0

    def __post_init__(self) -> None:
        for name in ("n_items", "n_users", "embedding_dim"):
            if getattr(self, name) <= 0:
                raise RecsysModelError(f"FeatureSpec.{name} must be > 0, got {getattr(self, name)}")
        if not self.item_fields:
            raise RecsysModelError("FeatureSpec.item_fields: an item needs at least one sparse feature")
        names = [f.name for f in self.item_fields]
        if len(set(names)) != len(names):
            raise RecsysModelError(f"FeatureSpec.item_fields: duplicate field names {names}")
        rows: dict[str, int] = {}
        for f in self.item_fields:
            if f.rows <= 0 or f.max_len <= 0:
                raise RecsysModelError(f"FeatureSpec.item_fields[{f.name!r}]: rows and max_len must be > 0, got "
                                       f"{f.rows}, {f.max_len}")
            if rows.setdefault(f.table, f.rows) != f.rows:
                raise RecsysModelError(f"FeatureSpec.item_fields: table {f.table!r} has {rows[f.table]} rows for one "
                                       f"field and {f.rows} for {f.name!r}")
        for name, card in self.user_features:
            if card <= 0:
                raise RecsysModelError(f"FeatureSpec.user_features[{name!r}]: cardinality must be > 0, got {card}")

    @property
    def dense_in_features(self) -> int:
        """Width of `RankBatch.dense`: a constant 1 (DLRM needs a dense input) + target + history-mean content."""
        return 1 + 2 * self.dense_dim

    @property
    def has_item_id(self) -> bool:
        """Whether the item id is a feature (codes_only has none: every item, cold ones too, is scored from
        its content features)."""
        return any(f.name == ITEM for f in self.item_fields)

    def tables(self) -> dict[str, int]:
        """Item-side table name -> rows, in field order."""
        return {f.table: f.rows for f in self.item_fields}

    def embedding_parameters(self) -> int:
        """Rows x D summed over every table (user-side and item-side): the embedding parameters of any ranker
        built on this spec."""
        rows = sum(r for _, _, r in self.context_tables()) + sum(self.tables().values())
        return rows * self.embedding_dim

    def context_tables(self) -> list[tuple[str, str, int]]:
        """(table, key, rows) of the pooled user-side features: user id and user features."""
        return [("t_user", USER, self.n_users)] + [(f"t_{user_key(n)}", user_key(n), c) for n, c in self.user_features]

    def kjt_keys(self, layout: Layout = "pooled") -> list[str]:
        """Keys of the batch KJT: context keys, then (pooled layout) target and history key per item field."""
        out = [key for _, key, _ in self.context_tables()]
        if layout == "pooled":
            for f in self.item_fields:
                out += [f.name, hist_key(f.name)]
        return out

    def item_keys(self) -> list[str]:
        """Keys of the per-item KJT of the sequence layout: one per item field."""
        return [f.name for f in self.item_fields]


def _bag_config(name: str, rows: int, dim: int, keys: list[str]) -> EmbeddingBagConfig:
    return EmbeddingBagConfig(name=name, embedding_dim=dim, num_embeddings=rows, feature_names=keys,
                              pooling=PoolingType.MEAN)


def context_bag_configs(spec: FeatureSpec) -> list[EmbeddingBagConfig]:
    """Pooled user-side tables (user id, user features)."""
    return [_bag_config(t, rows, spec.embedding_dim, [k]) for t, k, rows in spec.context_tables()]


def item_bag_configs(spec: FeatureSpec, layout: Layout) -> list[EmbeddingBagConfig]:
    """Item-side tables, each serving every field that names it: the target and history keys of those fields
    (pooled layout) or their per-item keys (sequence layout). MEAN pooling: a one-token bag is its embedding."""
    out = []
    for table, rows in spec.tables().items():
        fields = [f.name for f in spec.item_fields if f.table == table]
        keys = [k for f in fields for k in ((f, hist_key(f)) if layout == "pooled" else (f,))]
        out.append(_bag_config(table, rows, spec.embedding_dim, keys))
    return out


def embedding_bag_configs(spec: FeatureSpec) -> list[EmbeddingBagConfig]:
    """All tables of the pooled layout (DLRM): context tables, then the item-side tables."""
    return context_bag_configs(spec) + item_bag_configs(spec, "pooled")


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """A spec plus the lookup arrays the batch builders read.

    user_table: (n_users, F_u) int64, category index of each user feature (F_u = len(spec.user_features)).
    item_tokens: field name -> (N, m) int64 tokens of every item, padded with -1 (m <= the field's max_len).
    content: (N, d) float32 content vectors, when spec.dense_dim > 0.
    """

    spec: FeatureSpec
    item_tokens: dict[str, torch.Tensor]
    user_table: torch.Tensor | None = None
    content: torch.Tensor | None = None
    full_fields: frozenset[str] = dataclasses.field(init=False, default=frozenset())  # set by __post_init__

    def __post_init__(self) -> None:
        s = self.spec
        _check("user_table", self.user_table, (s.n_users, len(s.user_features)), torch.int64, bool(s.user_features))
        _check("content", self.content, (s.n_items, s.dense_dim), torch.float32, s.dense_dim > 0)
        if set(self.item_tokens) != {f.name for f in s.item_fields}:
            raise RecsysModelError(f"item_tokens: expected one array per item field {[f.name for f in s.item_fields]}, "
                                   f"got {sorted(self.item_tokens)}")
        for f in s.item_fields:
            t = self.item_tokens[f.name]
            if t.dtype != torch.int64 or t.ndim != 2 or t.shape[0] != s.n_items or t.shape[1] > f.max_len:
                raise RecsysModelError(f"item_tokens[{f.name!r}]: expected int64 of shape ({s.n_items}, <= "
                                       f"{f.max_len}), got {t.dtype} of shape {tuple(t.shape)}")
            if t.numel() and (int(t.max()) >= f.rows or int(t.min()) < -1):
                raise RecsysModelError(f"item_tokens[{f.name!r}]: values must lie in [0, {f.rows}) (-1 = padding)")
        # the fields with no padding at all: every item's bag has all m tokens (the batch builders then skip
        # the padding mask, the same values and lengths: tests/recsys_models/test_features.py)
        full = frozenset(f.name for f in s.item_fields if self.item_tokens[f.name].numel() == 0
                         or int(self.item_tokens[f.name].min()) >= 0)
        object.__setattr__(self, "full_fields", full)
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
class RankBatch(Pipelineable):
    """Model input for B impressions (history padded to T, left-aligned, most recent at hist_len - 1).

    sparse: KJT with `spec.kjt_keys(layout)`.  dense: (B, spec.dense_in_features) float32.  labels: (B,) float32.
    item_idx: (B,) int64.  hist: (B, T) int64, 0 beyond hist_len.  hist_len: (B,) int64.
    Sequence layout only: items: KJT over the batch's U distinct items (`spec.item_keys()`); unique_items (U,)
    int64 their item_idx; target_pos (B,) and hist_pos (B, T) int64 positions into them (0 beyond hist_len).
    The loss of the batch (recsys_models.train_wrapper.rank_loss): loss_scale None: the mean BCE of its rows;
    else loss_scale * (sum of the BCE of the rows loss_mask (B,) bool keeps; all rows when None), a sharded
    rank's share of its global batch's mean (recsys_models.batching.rank_batch).
    A TorchRec `Pipelineable` (`to`, `record_stream`), so TorchRec's train pipelines can move it.
    """

    sparse: KeyedJaggedTensor
    dense: torch.Tensor
    labels: torch.Tensor
    item_idx: torch.Tensor
    hist: torch.Tensor
    hist_len: torch.Tensor
    items: KeyedJaggedTensor | None = None
    unique_items: torch.Tensor | None = None
    target_pos: torch.Tensor | None = None
    hist_pos: torch.Tensor | None = None
    loss_mask: torch.Tensor | None = None
    loss_scale: float | None = None

    def to(self, device: torch.device, non_blocking: bool = False) -> RankBatch:
        """The same batch on `device`, every field moved (a no-op when it is already there). non_blocking: an
        asynchronous host-to-device copy, which needs a pinned source (`pin_memory`) to overlap compute."""
        if self.labels.device == device:
            return self
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> RankBatch:
        """The same batch with every tensor in page-locked host memory (needs a CUDA build of torch)."""
        return self._map(lambda t: t.pin_memory())

    def record_stream(self, stream: torch.Stream) -> None:
        """Mark every tensor as used by `stream` (a CUDA stream: TorchRec's pipelines copy a batch on one stream
        and read it on another)."""
        def mark(t: _Movable) -> _Movable:
            t.record_stream(stream)  # type: ignore[arg-type]
            return t

        self._map(mark)

    def _map(self, fn: Callable[[_Movable], _Movable]) -> RankBatch:
        # Over dataclasses.fields, so a field added later moves too (a hand-written list once dropped the
        # sequence fields, and DIN/SIM then saw a pooled batch).
        return dataclasses.replace(self, **{f.name: _map_tensors(getattr(self, f.name), fn)
                                            for f in dataclasses.fields(self)})


_Movable = TypeVar("_Movable", torch.Tensor, KeyedJaggedTensor)


def _map_tensors(x: Any, fn: Callable[[_Movable], _Movable]) -> Any:
    """fn applied to every tensor and KJT in x, through dicts, lists and tuples; any other value kept as is."""
    if isinstance(x, (torch.Tensor, KeyedJaggedTensor)):
        return fn(x)
    if isinstance(x, dict):
        return {k: _map_tensors(v, fn) for k, v in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):  # a NamedTuple
        return type(x)(*(_map_tensors(v, fn) for v in x))
    if isinstance(x, (list, tuple)):
        return type(x)(_map_tensors(v, fn) for v in x)
    return x


def history_mask(hist_len: torch.Tensor, t: int) -> torch.Tensor:
    """hist_len: (B,) lengths -> (B, T) bool, True at valid (left-aligned) positions."""
    return torch.arange(t, device=hist_len.device)[None, :] < hist_len[:, None]


def _bags(tokens: torch.Tensor, rows: torch.Tensor, full: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The bags of items `rows` (R,) under tokens (N, m): (values, lengths (R,)), padding dropped. full: the
    table has no padding (FeatureSet.full_fields), so no mask is needed: the same values and lengths, without
    the boolean-mask gather (about 10x faster on a VQ bag of 25 tokens)."""
    tok = tokens[rows]
    if full:
        return tok.reshape(-1), torch.full((rows.shape[0],), tokens.shape[1], dtype=torch.int64, device=rows.device)
    valid = tok >= 0
    return tok[valid], valid.sum(1)


def _context(fs: FeatureSet, user_idx: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    ones = torch.ones_like(user_idx)
    values, lengths = [user_idx], [ones]
    for j in range(len(fs.spec.user_features)):
        assert fs.user_table is not None
        values.append(fs.user_table[user_idx, j])
        lengths.append(ones)
    return values, lengths


def build_kjt(fs: FeatureSet, user_idx: torch.Tensor, item_idx: torch.Tensor, hist: torch.Tensor,
              hist_len: torch.Tensor, layout: Layout = "pooled") -> KeyedJaggedTensor:
    """Vectorised KJT builder. user_idx, item_idx, hist_len: (B,) int64; hist: (B, T) int64 left-aligned.
    layout "pooled": context + target and history bag per item field; "sequence": context keys only."""
    values, lengths = _context(fs, user_idx)
    if layout == "pooled":
        hist_vals = hist[history_mask(hist_len, hist.shape[1])]  # row-major: row 0's history, then row 1's
        row_of = torch.repeat_interleave(torch.arange(user_idx.shape[0], device=hist.device), hist_len)
        for f in fs.spec.item_fields:
            tokens = fs.item_tokens[f.name]
            full = f.name in fs.full_fields
            v, n = _bags(tokens, item_idx, full)
            values.append(v)
            lengths.append(n)
            hv, hn = _bags(tokens, hist_vals, full)
            values.append(hv)
            lengths.append(torch.zeros_like(hist_len).index_add_(0, row_of, hn))
    return KeyedJaggedTensor(keys=fs.spec.kjt_keys(layout), values=torch.cat(values), lengths=torch.cat(lengths))


def build_item_kjt(fs: FeatureSet, items: torch.Tensor, valid: torch.Tensor | None = None) -> KeyedJaggedTensor:
    """KJT of the bags of items (U,) int64, one key per item field (sequence layout); valid (U,) bool: False
    gives an empty bag (a padding slot)."""
    values, lengths = [], []
    for f in fs.spec.item_fields:
        tok = fs.item_tokens[f.name][items]
        keep = tok >= 0 if valid is None else (tok >= 0) & valid[:, None]
        values.append(tok[keep])
        lengths.append(keep.sum(1))
    return KeyedJaggedTensor(keys=fs.spec.item_keys(), values=torch.cat(values), lengths=torch.cat(lengths))


def build_kjt_reference(fs: FeatureSet, rows: Sequence[tuple[int, int, Sequence[int]]]) -> KeyedJaggedTensor:
    """Per-row reference of `build_kjt` (pooled layout): rows are (user_idx, item_idx, history item_idx list)."""
    spec = fs.spec
    per_key: dict[str, list[list[int]]] = {k: [] for k in spec.kjt_keys()}

    def bag(field: str, item: int) -> list[int]:
        return [int(v) for v in fs.item_tokens[field][item] if int(v) >= 0]

    for user, item, history in rows:
        per_key[USER].append([user])
        for j, (name, _) in enumerate(spec.user_features):
            assert fs.user_table is not None
            per_key[user_key(name)].append([int(fs.user_table[user, j])])
        for f in spec.item_fields:
            per_key[f.name].append(bag(f.name, item))
            per_key[hist_key(f.name)].append([v for h in history for v in bag(f.name, h)])
    values = [v for k in spec.kjt_keys() for row in per_key[k] for v in row]
    lengths = [len(row) for k in spec.kjt_keys() for row in per_key[k]]
    return KeyedJaggedTensor(keys=spec.kjt_keys(), values=torch.tensor(values, dtype=torch.int64),
                             lengths=torch.tensor(lengths, dtype=torch.int64))


def build_dense(fs: FeatureSet, item_idx: torch.Tensor, hist: torch.Tensor, hist_len: torch.Tensor) -> torch.Tensor:
    """item_idx (B,), hist (B, T), hist_len (B,) -> (B, 1 + 2d) float32: [1, content[target], mean of
    content[history]] (zeros for an empty history)."""
    ones = torch.ones(item_idx.shape[0], 1, device=item_idx.device)
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
    layout: Layout = "pooled",
    *,
    dedup: bool = True,
) -> RankBatch:
    """Everything a ranker needs for B rows: user_idx, item_idx, hist_len, labels (B,); hist (B, T) int64
    left-aligned (shapes as in `RankBatch`); layout "pooled" (DLRM) or "sequence" (DIN, SIM). Sequence layout:
    dedup pools each distinct item of the batch once; dedup=False gives every position (B targets, then B x T
    history slots, padding slots as empty bags) its own bag, a per-item KJT of fixed size B (1 + T)."""
    batch = RankBatch(
        sparse=build_kjt(fs, user_idx, item_idx, hist, hist_len, layout),
        dense=build_dense(fs, item_idx, hist, hist_len),
        labels=labels.float(),
        item_idx=item_idx,
        hist=hist,
        hist_len=hist_len,
    )
    if layout == "sequence":
        mask = history_mask(hist_len, hist.shape[1])
        b = item_idx.shape[0]
        if dedup:
            unique, inverse = torch.unique(torch.cat([item_idx, hist[mask]]), return_inverse=True)
            hist_pos = torch.zeros_like(hist)
            hist_pos[mask] = inverse[b:]
            batch.items, batch.unique_items = build_item_kjt(fs, unique), unique
            batch.target_pos, batch.hist_pos = inverse[:b], hist_pos
        else:
            slots = torch.cat([item_idx, hist.reshape(-1)])
            valid = torch.cat([torch.ones_like(item_idx, dtype=torch.bool), mask.reshape(-1)])
            batch.items, batch.unique_items = build_item_kjt(fs, slots, valid), slots
            batch.target_pos = torch.arange(b, device=item_idx.device)
            batch.hist_pos = b + torch.arange(hist.numel(), device=item_idx.device).view_as(hist)
    return batch
