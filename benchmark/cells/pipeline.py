"""How a cell's batches run through its model: TorchRec's `TrainPipelineSparseDist`, or one batch after the other.

    rank.pipeline     "auto"         sparse_dist for a sharded ranker on CUDA, else none
                      "sparse_dist"  TorchRec's TrainPipelineSparseDist (needs a sharded ranker)
                      "none"         the plain loop
    run_batches(model, batches, optimizers, pipeline) -> (loss, logits, labels) per batch, in order

The model has its loss inside (recsys_models.train_wrapper.RankerTrain, sharded: DMP(RankerTrain)), as TorchRec's
pipelines need. In training mode every batch is one optimisation step; in eval mode (under torch.no_grad) the same
call scores the batches, through the same pipeline, as TorchRec's DLRM example evaluates.

TrainPipelineSparseDist keeps three batches in flight: while batch i runs forward, backward and the optimiser
step, batch i + 1's sharded-table input distribution (the ids' all-to-all) has started and batch i + 2 is copied
to the device (on CUDA: separate streams from pinned host memory). On CPU it runs too (no streams; the same
steps in the same order), which is how `tests/benchmark/test_pipeline.py` checks that it computes what the plain
loop computes. The ids' redistribution reads no weights, so starting it early changes when, not what.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Literal

import torch
import torch.fx
from torch import nn

from benchmark.core.errors import ConfigError
from recsys_models.features import RankBatch

if TYPE_CHECKING:
    from torchrec.distributed.train_pipeline import TrainPipeline

Output = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (loss, logits (B,), labels (B,)), graph-free


def pipeline_kind(setting: str, sharded: bool, device: torch.device) -> Literal["sparse_dist", "none"]:
    """What `rank.pipeline` means for a model: "sparse_dist" when set so, or "auto" for a sharded model on
    CUDA; else "none" (an unsharded model has no input distribution to pipeline; TrainConfig refuses
    "sparse_dist" without rank.sharded)."""
    if setting == "sparse_dist" and sharded:
        return "sparse_dist"
    if setting == "auto" and sharded and device.type == "cuda":
        return "sparse_dist"
    return "none"


def make_pipeline(kind: str, model: nn.Module, optimizers: list[torch.optim.Optimizer],
                  device: torch.device) -> TrainPipeline | None:
    """TorchRec's TrainPipelineSparseDist over `model` (a DistributedModelParallel whose forward returns
    (loss, output)) and its one optimiser (the sharded path's CombinedOptimizer) when kind is "sparse_dist";
    None for the plain loop. It runs every batch it is given (execute_all_batches)."""
    if kind != "sparse_dist":
        return None
    if len(optimizers) != 1:
        raise ValueError(f"TrainPipelineSparseDist takes one optimiser, got {len(optimizers)}")
    from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

    return TrainPipelineSparseDist(model, optimizers[0], device, execute_all_batches=True)


def train_step(model: nn.Module, optimizers: list[torch.optim.Optimizer], batch: RankBatch) -> Output:
    """One optimisation step of a model with its loss inside (RankerTrain, or a DMP of one) on one batch:
    forward, zero the gradients, backward, step. Returns its graph-free (loss, logits, labels). Also timed by
    `perf rank`."""
    loss, out = model(batch)
    for opt in optimizers:
        opt.zero_grad()
    loss.backward()
    for opt in optimizers:
        opt.step()
    return out


def run_batches(model: nn.Module, batches: Iterable[RankBatch], optimizers: list[torch.optim.Optimizer],
                pipeline: TrainPipeline | None = None) -> Iterator[Output]:
    """Each batch through `model` in order, yielding its (loss, logits, labels): one training step per batch
    when the model is in training mode, else a forward pass (call it under torch.no_grad). pipeline: a
    TorchRec pipeline over `model` (make_pipeline), which moves the batches to its device itself; None: the
    plain loop (the batches must already be on the model's device). Every batch is run, in the order given."""
    if pipeline is None:
        for batch in batches:
            yield train_step(model, optimizers, batch) if model.training else model(batch)[1]
        return
    it = iter(batches)
    while True:
        try:
            out = pipeline.progress(it)
        except StopIteration:
            return
        except torch.fx.proxy.TraceError as e:  # on the first batch: TorchRec traces the model to find the tables' inputs
            raise ConfigError(
                f"rank.pipeline: TorchRec's TrainPipelineSparseDist traces the ranker with torch.fx to find its sharded "
                f"tables' inputs, and this ranker cannot be traced ({e}). Call the table collections on the batch's "
                f"own fields and keep Python that reads tensors out of the modules above them (torch.fx.wrap, as "
                f"recsys_models.din.din_head does; docs/extending.md), or set rank.pipeline = \"none\"") from e
        yield out
