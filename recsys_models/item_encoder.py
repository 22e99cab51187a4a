"""Item-side representation shared by DIN and SIM: target (B, D_i) and history (B, T, D_i).

D_i = D * (number of item fields: item id, RQ levels or code tokens, VQ bag, metadata) + D if a content vector
is used (a frozen linear map of it would be a fixed feature; a trainable Linear(d, D) lets the ranker weigh it,
as FuxiCTR does with `pretrain_usage`). The content table itself stays frozen (a buffer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx
from torch import nn
from torch.profiler import record_function
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from recsys_models.errors import RecsysModelError
from recsys_models.features import FeatureSpec, RankBatch, context_bag_configs, history_mask, item_bag_configs


class SequenceItemEncoder(nn.Module):
    """Item representations for DIN and SIM: each of the batch's U distinct items is pooled once per item field
    (an EmbeddingBagCollection over `batch.items`, mean of the field's bag), optionally joined by its projected
    frozen content (N, d); the target (B, D_i) and history (B, T, D_i) rows are gathered from those U.
    device: where the tables are allocated (meta: deferred to DistributedModelParallel)."""

    def __init__(self, spec: FeatureSpec, content: torch.Tensor | None = None,
                 device: torch.device | None = None) -> None:
        super().__init__()
        self.keys = spec.item_keys()
        self.tables = {f.name: f.table for f in spec.item_fields}  # field -> the table it is embedded in
        self.collection = EmbeddingBagCollection(tables=item_bag_configs(spec, "sequence"), device=device)
        self.content: torch.Tensor | None
        self.register_buffer("content", content, persistent=False)
        self.project = nn.Linear(spec.dense_dim, spec.embedding_dim) if content is not None else None
        self.dim = spec.embedding_dim * (len(self.keys) + (1 if content is not None else 0))

    def forward(self, batch: RankBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> target (B, D_i), history (B, T, D_i), mask (B, T) bool."""
        if batch.items is None or batch.target_pos is None or batch.hist_pos is None or batch.unique_items is None:
            raise RecsysModelError("SequenceItemEncoder: the batch was built with layout='pooled'; DIN and SIM need "
                                   "build_batch(..., layout='sequence')")
        rep = self.represent(batch, by_collection=True)
        with record_function("qarm.features"):
            t = batch.hist.shape[1]
            return rep[batch.target_pos], rep[batch.hist_pos], history_mask(batch.hist_len, t)

    def represent(self, batch: RankBatch, by_collection: bool = False) -> torch.Tensor:
        """-> (U, D_i): each of the batch's distinct items once (target and history rows index into it with
        batch.target_pos and batch.hist_pos). by_collection: always pool through the collection (the reference
        of the one-token fast path)."""
        if batch.items is None or batch.unique_items is None:
            raise RecsysModelError("SequenceItemEncoder: the batch was built with layout='pooled'; DIN and SIM need "
                                   "build_batch(..., layout='sequence')")
        with record_function("qarm.lookup"):
            parts = None if by_collection else self._single_token_rows(batch.items)
            if parts is None:  # the collection pools the bags (its call is what TorchRec's pipelines trace)
                return pooled_item_rows(self, self.collection(batch.items), batch.unique_items)
            if self.content is not None and self.project is not None:
                parts.append(self.projected(batch.unique_items))
            return torch.cat(parts, dim=-1)  # (U, D_i)

    def _single_token_rows(self, items: KeyedJaggedTensor) -> list[torch.Tensor] | None:
        """Each field's (U, D) rows, when the collection is the plain (unsharded) EmbeddingBagCollection and every
        item has exactly one token in every field: the mean of a one-token bag is its token's row, gathered here
        straight from the collection's tables (`index_select`, whose backward is a plain index_add, ~2-3x
        cheaper on CPU than EmbeddingBag's sorting backward). None otherwise: the collection pools the bags."""
        if type(self.collection) is not EmbeddingBagCollection or items.keys() != self.keys:
            return None
        u, lengths = items.stride(), items.lengths()
        if lengths.numel() != u * len(self.keys) or not bool((lengths == 1).all()):
            return None
        values = items.values().view(len(self.keys), u)  # key-major, one token per bag
        bags = self.collection.embedding_bags
        return [bags[self.tables[k]].weight.index_select(0, values[j]) for j, k in enumerate(self.keys)]

    def projected(self, idx: torch.Tensor) -> torch.Tensor:
        """project(content[idx]) for idx (U,). When the catalogue has fewer rows than idx holds, projecting the
        whole table once and gathering D-wide rows is cheaper than gathering d-wide rows (d = 384 for MiniLM)."""
        assert self.content is not None and self.project is not None
        if self.content.shape[0] <= idx.numel():
            return self.project(self.content).index_select(0, idx)
        return self.project(self.content[idx])


def pooled_item_rows(encoder: SequenceItemEncoder, pooled: KeyedTensor, unique_items: torch.Tensor) -> torch.Tensor:
    """(U, D_i) from the collection's pooled fields (a KeyedTensor, U rows per key) and the projected content of
    the items unique_items (U,) int64. Its branches read the KeyedTensor's keys, so TorchRec's pipeline tracer (torch.fx) records it as one
    call (`torch.fx.wrap` below) instead of entering it."""
    if pooled.keys() == encoder.keys and encoder.content is None:
        return pooled.values()  # already the fields side by side in key order: no split and re-join
    parts = [pooled[k] for k in encoder.keys]  # each (U, D)
    if encoder.content is not None and encoder.project is not None:
        parts.append(encoder.projected(unique_items))
    return torch.cat(parts, dim=-1)


torch.fx.wrap("pooled_item_rows")


class ContextEncoder(nn.Module):
    """Pooled user id and user features -> (B, F_c * D). device: where the tables are allocated."""

    def __init__(self, spec: FeatureSpec, device: torch.device | None = None) -> None:
        super().__init__()
        self.collection = EmbeddingBagCollection(tables=context_bag_configs(spec), device=device)
        self.keys = [key for _, key, _ in spec.context_tables()]
        self.dim = spec.embedding_dim * len(self.keys)

    def forward(self, batch: RankBatch) -> torch.Tensor:
        """-> (B, F_c * D): the user-side features of every row, by key in the spec's order (a sharded
        collection returns its keys grouped by rank, so `.values()` would permute the columns with the world
        size)."""
        with record_function("qarm.lookup"):
            pooled = self.collection(batch.sparse)
            return torch.cat([pooled[k] for k in self.keys], dim=1)


@dataclass(frozen=True)
class Selection:
    """Some history items of each of B rows, as a jagged array over the batch's U distinct items::

        row     [0, 0, 0, 2]       (n,) int64, the row of each selected item (rows in order)
        item    [5, 1, 5, 3]       (n,) int64, its index among the U distinct items (repeats allowed)
        offsets [0, 3, 3, 4]       (B + 1,) int64, row b's items are [offsets[b], offsets[b + 1])
        lengths [3, 0, 1]          (B,) int64

    `width` is the padded width K (positions per row before masking)."""

    row: torch.Tensor
    item: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor
    width: int


def select_items(hist_pos: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> Selection:
    """hist_pos (B, T) int64 (the distinct-item index of each history slot), positions (B, K) int64 and mask
    (B, K) bool (the slots kept) -> their Selection, row-major (a row's items in the order of `positions`)."""
    rows, cols = mask.nonzero(as_tuple=True)
    item = hist_pos.gather(1, positions)[rows, cols]
    lengths = mask.sum(1)
    offsets = torch.zeros(mask.shape[0] + 1, dtype=torch.int64, device=mask.device)
    torch.cumsum(lengths, 0, out=offsets[1:])
    return Selection(rows, item, offsets, lengths, mask.shape[1])


def latest_positions(hist_len: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """hist_len: (B,) -> positions of the latest r history items: (B, r) int64 and a (B, r) bool mask."""
    idx = hist_len[:, None] - r + torch.arange(r, device=hist_len.device)[None, :]
    mask = idx >= 0
    return idx.clamp(min=0), mask


def gather_positions(seq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """seq (B, T, D), positions (B, K) -> (B, K, D)."""
    return seq.gather(1, positions.unsqueeze(-1).expand(-1, -1, seq.shape[-1]))


def mlp(in_features: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """ReLU MLP ending in one logit."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)
