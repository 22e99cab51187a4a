"""DLRM ranker: torchrec's `DLRM` (or `DLRM_DCN`) over an EmbeddingBagCollection of every feature.

History features (item ids, codes) are MEAN-pooled bags of the tables they share with the target
(features.embedding_bag_configs); the dense input is [1, content(target), mean content(history)].
"""

from __future__ import annotations

import torch
from torch import nn
from torch.profiler import record_function
from torchrec.models.dlrm import DLRM, DLRM_DCN
from torchrec.modules.embedding_modules import EmbeddingBagCollection

from recsys_models.config import DlrmConfig
from recsys_models.features import FeatureSpec, RankBatch, embedding_bag_configs

DEFAULT_DLRM = DlrmConfig()


class DlrmRanker(nn.Module):
    """Adapts a torchrec DLRM to `RankBatch` -> logits (B,). The loss is put around it by
    recsys_models.train_wrapper.RankerTrain (TorchRec's DLRMTrain idiom)."""

    def __init__(self, dlrm: DLRM) -> None:
        super().__init__()
        self.dlrm = dlrm

    def forward(self, batch: RankBatch) -> torch.Tensor:
        # torchrec's DLRM.forward (DLRM_DCN inherits it), step by step so that a profile sees its parts.
        d = self.dlrm
        with record_function("qarm.mlp"):
            dense = d.dense_arch(batch.dense)
        with record_function("qarm.lookup"):
            sparse = d.sparse_arch(batch.sparse)
        with record_function("qarm.interaction"):
            inter = d.inter_arch(dense_features=dense, sparse_features=sparse)
        with record_function("qarm.mlp"):
            return d.over_arch(inter).squeeze(-1)


def build_dlrm(spec: FeatureSpec, cfg: DlrmConfig = DEFAULT_DLRM, *, device: torch.device | None = None) -> DlrmRanker:
    """DLRM of the given spec. `device=torch.device("meta")` defers table allocation to DMP sharding."""
    d = spec.embedding_dim
    ebc = EmbeddingBagCollection(tables=embedding_bag_configs(spec), device=device)
    common = dict(
        embedding_bag_collection=ebc,
        dense_in_features=spec.dense_in_features,
        dense_arch_layer_sizes=[*cfg.dense_arch, d],
        over_arch_layer_sizes=[*cfg.over_arch, 1],
    )
    if cfg.dcn:
        return DlrmRanker(DLRM_DCN(**common, dcn_num_layers=cfg.dcn_layers, dcn_low_rank_dim=cfg.dcn_low_rank))
    return DlrmRanker(DLRM(**common))
