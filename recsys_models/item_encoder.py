"""Item-side representation shared by DIN and SIM: target (B, D_i) and history (B, T, D_i).

D_i = D * (number of item-side tables: item id and one per RQ level) + D if a content vector is
used (a frozen linear map of it would be a fixed feature; a trainable Linear(d, D) lets the ranker
weigh it, as FuxiCTR does with `pretrain_usage`).  The content table itself stays frozen (a buffer).
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection

from recsys_models.features import FeatureSpec, RankBatch, context_bag_configs, history_mask, sequence_configs


class SequenceItemEncoder(nn.Module):
    """EmbeddingCollection (unpooled) over the item-side tables + optional projected frozen content (N, d).
    device: where the tables are allocated (meta: deferred to DistributedModelParallel)."""

    def __init__(self, spec: FeatureSpec, content: torch.Tensor | None = None,
                 device: torch.device | None = None) -> None:
        super().__init__()
        self.pairs = [(tk, hk) for _, tk, hk, _ in spec.sequence_pairs()]
        self.collection = EmbeddingCollection(tables=sequence_configs(spec), device=device)
        self.content: torch.Tensor | None
        self.register_buffer("content", content, persistent=False)
        self.project = nn.Linear(spec.dense_dim, spec.embedding_dim) if content is not None else None
        self.dim = spec.embedding_dim * (len(self.pairs) + (1 if content is not None else 0))

    def forward(self, batch: RankBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> target (B, D_i), history (B, T, D_i), mask (B, T) bool."""
        t = batch.hist.shape[1]
        out = self.collection(batch.sparse)
        targets = [out[tk].values() for tk, _ in self.pairs]
        hists = [out[hk].to_padded_dense(desired_length=t) for _, hk in self.pairs]
        if self.content is not None and self.project is not None:
            targets.append(self._projected(batch.item_idx))
            hists.append(self._projected(batch.hist))
        return torch.cat(targets, dim=-1), torch.cat(hists, dim=-1), history_mask(batch.hist_len, t)


    def _projected(self, idx: torch.Tensor) -> torch.Tensor:
        """project(content[idx]) for idx of any shape. When the catalogue has fewer rows than idx holds
        (ML-100K: 1682 items vs B*T = 51,200 history slots) projecting the whole table once and gathering
        D-wide rows is far cheaper than gathering d-wide rows (d = 384 for MiniLM) and projecting them."""
        assert self.content is not None and self.project is not None
        if self.content.shape[0] <= idx.numel():
            return self.project(self.content)[idx]
        return self.project(self.content[idx])


class ContextEncoder(nn.Module):
    """Pooled user id, user features and VQ bag -> (B, F_c * D). device: where the tables are allocated."""

    def __init__(self, spec: FeatureSpec, device: torch.device | None = None) -> None:
        super().__init__()
        self.collection = EmbeddingBagCollection(tables=context_bag_configs(spec), device=device)
        self.keys = [key for _, key, _ in spec.context_tables()]
        self.dim = spec.embedding_dim * len(self.keys)

    def forward(self, batch: RankBatch) -> torch.Tensor:
        # By key, in the spec's order: a sharded collection returns its keys grouped by rank, so `.values()`
        # would permute the columns with the world size.
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
