"""Item-side representation shared by DIN and SIM: target (B, D_i) and history (B, T, D_i).

D_i = D * (number of item fields: item id, RQ levels or code tokens, VQ bag, metadata) + D if a content vector
is used (a frozen linear map of it would be a fixed feature; a trainable Linear(d, D) lets the ranker weigh it,
as FuxiCTR does with `pretrain_usage`). The content table itself stays frozen (a buffer).
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingBagCollection

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
        pooled = self.collection(batch.items).to_dict()
        parts = [pooled[k] for k in self.keys]  # each (U, D)
        if self.content is not None and self.project is not None:
            parts.append(self._projected(batch.unique_items))
        rep = torch.cat(parts, dim=-1)  # (U, D_i)
        t = batch.hist.shape[1]
        return rep[batch.target_pos], rep[batch.hist_pos], history_mask(batch.hist_len, t)

    def _projected(self, idx: torch.Tensor) -> torch.Tensor:
        """project(content[idx]) for idx (U,). When the catalogue has fewer rows than idx holds, projecting the
        whole table once and gathering D-wide rows is cheaper than gathering d-wide rows (d = 384 for MiniLM)."""
        assert self.content is not None and self.project is not None
        if self.content.shape[0] <= idx.numel():
            return self.project(self.content)[idx]
        return self.project(self.content[idx])


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
        pooled = self.collection(batch.sparse)
        return torch.cat([pooled[k] for k in self.keys], dim=1)


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
