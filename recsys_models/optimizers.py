"""The embedding tables' optimiser: one definition for the plain (unsharded) and the fused (sharded) path.

    table_optimizer(name, lr) -> TableOptimizer(cls, kwargs)
        plain:   cls(table_params, **kwargs)                                   (benchmark.cells.train)
        sharded: apply_optimizer_in_backward(cls, table_params, kwargs)        (recsys_models.sharding)

TorchRec maps `cls` to an fbgemm fused kernel (torchrec.distributed.utils `_OPTIMIZER_CLASS_TO_EMB_OPT_TYPE`)
and hands `kwargs` to it as fused params ("lr" becomes "learning_rate"); every setting the kernel reads is
stated here, so both paths take the same step:

- "adagrad": torch.optim.Adagrad -> EXACT_ADAGRAD. Per element, G += g^2, w -= lr g / (sqrt(G) + eps), G starts
  at 0, no lr decay, no weight decay, in both. fbgemm's eps default is 1e-8 and torch's 1e-10: eps is passed
  (torch's 1e-10, so the unsharded figures are unchanged), else the sharded run's steps differ from the plain
  one's wherever sqrt(G) is small.
- "rowwise_adagrad": torchrec.optim.RowWiseAdagrad (a plain-torch reference: one accumulator per row,
  G_r += mean_j g_rj^2, w_r -= lr g_r / (sqrt(G_r) + eps)) -> EXACT_ROWWISE_ADAGRAD, the same rule in fbgemm.
  Under column-wise sharding fbgemm keeps one accumulator per row of each column shard (the mean over that
  shard's columns), so it differs from the reference there (`recsys_models.config.sharding_problem` refuses it).
- "adam": torch.optim.Adam -> ADAM (fbgemm has CUDA kernels only); eps passed (1e-8, both defaults); betas left
  at both defaults (0.9, 0.999): torch takes `betas`, fbgemm `beta1` / `beta2`, so no one dict sets both.
The weight decay of `rank.weight_decay` is the dense parameters' (Adam); tables have none on either path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from recsys_models.config import TABLE_OPTIMIZERS, TableOptimizerName
from recsys_models.errors import RecsysModelError

ADAGRAD_EPS = 1e-10  # torch.optim.Adagrad's default (fbgemm's is 1e-8)
ADAM_EPS = 1e-8  # torch.optim.Adam's and fbgemm ADAM's default
FUSED_CLASSES = (torch.optim.Adagrad, torch.optim.Adam)  # torch optimisers with a fused CPU / CUDA kernel


@dataclass(frozen=True)
class TableOptimizer:
    """cls: a torch optimiser class TorchRec can fuse; kwargs: its settings, valid both as cls(**kwargs) and as
    fbgemm fused params."""

    cls: type[torch.optim.Optimizer]
    kwargs: dict[str, Any]

    def build(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The plain-torch optimiser over the (unsharded) table parameters: torch's fused kernel where it has one
        (Adagrad, Adam: the same update as the for-each loop, one pass per tensor; `fused` is not an fbgemm fused
        param, so it stays out of kwargs)."""
        fused = {"fused": True} if self.cls in FUSED_CLASSES else {}
        return self.cls(params, **self.kwargs, **fused)


def table_optimizer(name: TableOptimizerName, lr: float) -> TableOptimizer:
    """The tables' optimiser `name` ("adagrad", "rowwise_adagrad", "adam") at learning rate `lr`."""
    if name == "adagrad":
        return TableOptimizer(torch.optim.Adagrad, {"lr": lr, "eps": ADAGRAD_EPS})
    if name == "rowwise_adagrad":
        return TableOptimizer(RowWiseAdagrad, {"lr": lr, "eps": ADAGRAD_EPS})
    if name == "adam":
        return TableOptimizer(torch.optim.Adam, {"lr": lr, "eps": ADAM_EPS})
    raise RecsysModelError(f"rank.emb_optimizer: expected one of {', '.join(TABLE_OPTIMIZERS)}, got {name!r}")
