"""The loss inside the model, as TorchRec's examples do (`torchrec.models.dlrm.DLRMTrain`), for every ranker.

    RankerTrain(ranker)(batch) -> (loss, (loss.detach(), logits.detach(), labels))

TorchRec's train pipelines (`torchrec.distributed.train_pipeline`) call the model on a batch and back-propagate
the first element of what it returns, so the loss has to live in the model; this wrapper puts it there for
DLRM, DIN, SIM and any plugin ranker (a module mapping a RankBatch to logits (B,)). The loss is `rank_loss`:
the batch's mean BCE, or, on a sharded rank, its share of the global batch's mean (the batch carries it:
`RankBatch.loss_mask`, `RankBatch.loss_scale`, set by recsys_models.batching.rank_batch).

Sharded, the wrapper is what DistributedModelParallel wraps (DMP(RankerTrain(ranker)), as TorchRec shards
DLRMTrain), so its state keys carry the `model.` prefix.
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from recsys_models.features import RankBatch

RankOutput = tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def rank_loss(logits: torch.Tensor, batch: RankBatch) -> torch.Tensor:
    """The training loss of a batch from its logits (B,): the mean BCE with logits over its rows (the computation
    of torch.nn.BCEWithLogitsLoss) when batch.loss_scale is None; else loss_scale * the summed BCE of the rows
    loss_mask keeps (the computation of recsys_models.sharding.global_mean_bce, to the bit)."""
    if batch.loss_scale is None:
        return F.binary_cross_entropy_with_logits(logits, batch.labels)
    weight = None if batch.loss_mask is None else batch.loss_mask.to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, batch.labels, weight=weight, reduction="sum") * batch.loss_scale


# TorchRec's pipelines trace the model with torch.fx to find the sharded tables' inputs; the loss reads the batch's
# optional fields (Python branches), so the tracer records it as one call and does not enter it.
torch.fx.wrap("rank_loss")


class RankerTrain(nn.Module):
    """A ranker (RankBatch -> logits (B,)) with its loss inside: forward(batch) -> (loss, (loss.detach(),
    logits.detach(), labels)), the signature of TorchRec's DLRMTrain. `model` is the ranker."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: RankBatch) -> RankOutput:
        logits = self.model(batch)
        loss = rank_loss(logits, batch)
        return loss, (loss.detach(), logits.detach(), batch.labels)
