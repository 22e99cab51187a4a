"""A ranker plugin: an MLP over the pooled item, history and user features.

It reads the "pooled" batch layout (the one DLRM reads): every feature of the target item, its history and the
user is one pooled bag of a TorchRec EmbeddingBagCollection, so the suite shards its tables, moves it to the
device, trains, evaluates and logs it exactly as it does a built-in ranker.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingBagCollection

from benchmark.cells.rankers import BuildContext, RankerSpec
from recsys_models.features import RankBatch, embedding_bag_configs


class PooledMLP(nn.Module):
    """logit = MLP([pooled bags (B, F * D), dense (B, dense_in)]); the training loop puts the loss around it."""

    def __init__(self, ebc: EmbeddingBagCollection, n_features: int, dim: int, dense_in: int,
                 hidden: int = 32) -> None:
        super().__init__()
        self.ebc = ebc
        self.mlp = nn.Sequential(nn.Linear(n_features * dim + dense_in, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, batch: RankBatch) -> torch.Tensor:
        pooled = self.ebc(batch.sparse).values()  # (B, F * D)
        return self.mlp(torch.cat([pooled, batch.dense], dim=1)).squeeze(-1)


def build(fs, cfg, ctx: BuildContext) -> PooledMLP:
    tables = embedding_bag_configs(fs.spec)
    ebc = EmbeddingBagCollection(tables=tables, device=torch.device("meta") if ctx.meta else None)
    n_features = sum(len(t.feature_names) for t in tables)
    return PooledMLP(ebc, n_features, fs.spec.embedding_dim, fs.spec.dense_in_features)


POOLED_MLP = RankerSpec("pooled_mlp", "pooled", build, "an MLP over pooled item, history and user features")
