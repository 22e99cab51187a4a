"""Training loop of one benchmark cell (model, variant, seed): `train_cell(...) -> CellResult`.

Adam for dense parameters; Adagrad, row-wise Adagrad or Adam for embedding tables (plain torch optimizers over
the unsharded TorchRec modules, or the TorchRec fused optimizer in backward when `sharded`, with the same
settings: recsys_models.optimizers).
On `device` (benchmark.core.device); in a world of several ranks (benchmark.core.world) every ranker is sharded
(recsys_models.sharding), each rank trains on its part of every global batch (the same shuffled batches on
every rank, so the global batch is the one-process batch); each split's predictions are gathered in row order
to rank 0 only, which computes the metrics once and hands the others what they need (the validation metrics
that decide early stopping, and the test metrics of the result) by broadcast.
Early stopping on validation AUC (BARS/FuxiCTR: `monitor: AUC`, patience 2); the test split is
scored whenever validation AUC improves, so the reported test metrics are those of the best epoch.
Deterministic on CPU under a seed (init and shuffling draw from seeded generators). Never logs to
MLflow: the lead logs the returned values (and per epoch through `on_epoch`).
The loss lives in the model, as in TorchRec's examples: every ranker is trained as
recsys_models.train_wrapper.RankerTrain (sharded: DistributedModelParallel(RankerTrain)), which returns
(loss, (loss, logits, labels)); training and evaluation run the batches through benchmark.cells.pipeline
(`rank.pipeline`: TorchRec's TrainPipelineSparseDist for a sharded ranker, by default on CUDA only, or the
plain loop).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection
from tqdm import tqdm

from benchmark.cells.inputs import CellInputs
from benchmark.cells.metrics import all_metrics, cold_slice_metrics, slice_bootstrap, slice_metrics
from benchmark.cells.pipeline import make_pipeline, pipeline_kind, run_batches
from benchmark.cells.rankers import BuildContext, get_ranker
from benchmark.core.records import EpochRecord, epoch_metrics
from benchmark.core.world import World
from recsys_models.batching import SplitArrays, batch_of, batch_rows, rank_batch, split_arrays
from recsys_models.config import TrainConfig
from recsys_models.features import FeatureSet, Layout, RankBatch
from recsys_models.optimizers import table_optimizer
from recsys_models.train_wrapper import RankerTrain

if TYPE_CHECKING:
    from torchrec.distributed.train_pipeline import TrainPipeline

# torchrec calls torch.fx's is_fx_tracing() on every forward; torch 2.13 logs a deprecation warning for it once per
# process ("is_fx_tracing will return true for both fx.symbolic_trace and torch.export ..."), which a run's worker
# processes each print. Nothing here traces; silence that one logger.
logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)


@dataclass(frozen=True, eq=False)
class TrainedCell:
    """What training one cell gives: per-epoch history, the best validation epoch and its metrics (val_best on
    every validation row; val_slices: {"cold": ...} on the validation rows of items without a train row, when
    there are any: data.split.val_cold_item_frac draws them), test metrics per slice (all, cold, warm, pop_bucket_<b>) at that epoch, the test predictions (user_idx, item_idx, label,
    pred; None on a rank other than 0 of several: only rank 0 assembles them), the parameter count (of the
    unsharded model), when sharded, the plan: {table: "<sharding type> ranks [..]"}, and the pipeline the
    batches ran through ("sparse_dist" or "none": benchmark.cells.pipeline)."""

    history: tuple[EpochRecord, ...]
    best_epoch: int
    val_best: dict[str, float]
    test: dict[str, dict[str, float]]
    test_predictions: pl.DataFrame | None
    n_embedding_parameters: int
    n_dense_parameters: int
    test_bootstrap: dict[str, tuple[float, float] | None]
    sharding_plan: dict[str, str] = field(default_factory=dict)
    pipeline: str = "none"
    val_slices: dict[str, dict[str, float]] = field(default_factory=dict)


def embedding_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the TorchRec embedding tables (EmbeddingBagCollection / EmbeddingCollection)."""
    return [p for m in model.modules() if isinstance(m, EmbeddingBagCollection | EmbeddingCollection)
            for p in m.parameters()]


def make_optimizers(model: nn.Module, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    """[Adam over the dense parameters, the tables' optimiser] of an unsharded model: plain torch, with the
    settings the sharded path fuses into fbgemm (recsys_models.optimizers.table_optimizer)."""
    emb = embedding_parameters(model)
    emb_ids = {id(p) for p in emb}
    dense = [p for p in model.parameters() if id(p) not in emb_ids]
    return [torch.optim.Adam(dense, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True),  # torch's fused kernel
            table_optimizer(cfg.emb_optimizer, cfg.emb_lr).build(emb)]


def _feed(batch: RankBatch, device: torch.device, pipeline: TrainPipeline | None) -> RankBatch:
    """A batch as the loop takes it: on the device for the plain loop; a pipeline copies it itself (from pinned
    memory on CUDA, so the copy overlaps the previous batch's compute)."""
    if pipeline is None:
        return batch.to(device)
    return batch.pin_memory() if device.type == "cuda" else batch


@torch.no_grad()
def predict(model: nn.Module, fs: FeatureSet, arrays: SplitArrays, batch_size: int,
            layout: Layout = "pooled", device: torch.device | None = None,
            world: World | None = None, pipeline: TrainPipeline | None = None) -> np.ndarray | None:
    """Click probabilities (n,) float64 of a split, in row order. model: a ranker with its loss inside
    (RankerTrain, or a DMP of one), in eval mode through `pipeline` when given (the training pipeline, as
    TorchRec's examples evaluate), else batch after batch. Several ranks: each scores its part of every batch
    (all ranks must call it: the sharded forward is collective), and the parts are gathered to rank 0, which
    returns the whole split; the other ranks return None."""
    model.eval()
    device = device or torch.device("cpu")
    world = world or World()
    parts: list[tuple[torch.Tensor, torch.Tensor]] = []  # several ranks: (rows (B_r,), real (B_r,) bool) per batch

    def batches() -> Iterator[RankBatch]:
        for idx in batch_rows(len(arrays), batch_size):
            if world.size == 1:
                batch = batch_of(fs, arrays, idx, layout)
            else:
                batch, part, real = rank_batch(fs, arrays, idx, layout, world.rank, world.size)
                parts.append((part, real))
            yield _feed(batch, device, pipeline)

    out = [torch.sigmoid(logits).double().cpu() for _, logits, _ in run_batches(model, batches(), [], pipeline)]
    if world.size == 1:
        return torch.cat(out).numpy() if out else np.zeros(0)
    rows = [part[real] for part, real in parts]
    preds = [p[real] for p, (_, real) in zip(out, parts, strict=True)]
    cat = (lambda xs, dt: torch.cat(xs).numpy() if xs else np.zeros(0, dt))  # noqa: E731
    return world.gather_rows(cat(rows, np.int64), cat(preds, np.float64), len(arrays))


def _train_epoch(
    model: nn.Module, fs: FeatureSet, arrays: SplitArrays, cfg: TrainConfig,
    optimizers: list[torch.optim.Optimizer], generator: torch.Generator, desc: str, progress: bool,
    layout: Layout, device: torch.device, world: World | None, pipeline: TrainPipeline | None = None,
) -> tuple[float, float]:
    """One pass over the training split -> (mean loss, seconds). world: None for an unsharded model (mean BCE
    per batch); else each rank takes its part of every global batch, which carries its share of the global mean
    loss (rank_batch). pipeline: TorchRec's pipeline over the model, or None for the plain loop."""
    model.train()
    total, seen, start = 0.0, 0, time.perf_counter()
    bar = tqdm(total=len(arrays), desc=desc, unit="row", disable=not progress, leave=False)
    sizes: deque[int] = deque()  # rows of each global batch handed out, not yet stepped (a pipeline reads ahead)

    def batches() -> Iterator[RankBatch]:
        for idx in batch_rows(len(arrays), cfg.batch_size, generator):
            if world is None:
                batch = batch_of(fs, arrays, idx, layout)
            else:
                batch = rank_batch(fs, arrays, idx, layout, world.rank, world.size)[0]
            sizes.append(len(idx))
            yield _feed(batch, device, pipeline)

    for step_loss, _, _ in run_batches(model, batches(), optimizers, pipeline):
        loss, b = float(step_loss), sizes.popleft()
        total, seen = total + (loss * b if world is None else loss * b / world.size), seen + b
        bar.update(b)
        bar.set_postfix(loss=f"{total / seen:.4f}", samples_s=f"{seen / (time.perf_counter() - start):,.0f}")
    bar.close()
    if world is not None and world.size > 1:  # the epoch's mean over all ranks' rows
        total = float(sum(world.gather_objects(total)))
    return total / max(seen, 1), time.perf_counter() - start


def train_cell(
    model_name: str,
    inputs: CellInputs,
    cfg: TrainConfig,
    seed: int,
    *,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = False,
    device: torch.device | None = None,
    world: World | None = None,
) -> TrainedCell:
    """Train `model_name` on the cell's features; early-stop on val AUC; test metrics at the best epoch.

    on_epoch(epoch, epoch_metrics(record)) after each epoch (train_loss, val_<metric>, epoch_seconds).
    device: where the model trains (default CPU). world: this rank's place when several ranks train the cell
    together (all of them call train_cell with the same arguments); every rank returns the same result, but for
    the test predictions, which rank 0 alone holds.
    """
    device = device or torch.device("cpu")
    world = world or World()
    fs = inputs.features
    n_items, n_users = fs.spec.n_items, fs.spec.n_users
    splits = {name: split_arrays(getattr(inputs, name), max_hist=cfg.max_hist, n_items=n_items, n_users=n_users,
                                 name=name) for name in ("train", "val", "test")}
    torch.manual_seed(seed)
    model, optimizers, sharded = _model_and_optimizers(model_name, inputs, cfg, device, world)
    kind = pipeline_kind(cfg.pipeline, sharded, device)
    pipeline = make_pipeline(kind, model, optimizers, device)
    layout = get_ranker(model_name).layout
    part_of = world if sharded else None
    generator = torch.Generator().manual_seed(seed)
    history: list[EpochRecord] = []
    best_auc, best_epoch, best_val, best_slices, test_pred = -math.inf, 0, {}, {}, None
    val_frame = inputs.val.select("user_idx", "item_idx", "label")
    for epoch in range(1, cfg.epochs + 1):
        loss, secs = _train_epoch(model, fs, splits["train"], cfg, optimizers, generator,
                                  f"{model_name} epoch {epoch}", progress, layout, device, part_of, pipeline)
        val = splits["val"]
        val_pred = predict(model, fs, val, cfg.eval_batch_size, layout, device, world, pipeline)
        # rank 0 holds the predictions and scores them; every rank takes its figures (and so its decision)
        val_m = world.agree(None if val_pred is None else all_metrics(val.user_idx.numpy(), val.labels.numpy(),
                                                                       val_pred))
        history.append(EpochRecord(epoch, loss, val_m, secs, len(splits["train"]) / max(secs, 1e-9)))
        if on_epoch is not None:
            on_epoch(epoch, epoch_metrics(history[-1]))
        score = val_m["auc"] if not math.isnan(val_m["auc"]) else -val_m["logloss"]
        if score > best_auc:
            best_auc, best_epoch, best_val = score, epoch, val_m
            best_slices = world.agree(None if val_pred is None else cold_slice_metrics(
                val_frame.with_columns(pred=pl.Series(val_pred)), inputs.items))
            test_pred = predict(model, fs, splits["test"], cfg.eval_batch_size, layout, device, world, pipeline)
        elif epoch - best_epoch >= max(cfg.patience, 1):
            break
    preds = None
    if test_pred is not None:  # rank 0 (or the one process)
        preds = inputs.test.select("user_idx", "item_idx", "label").with_columns(pred=pl.Series(test_pred))
    test, bootstrap = world.agree(None if preds is None else (slice_metrics(preds, inputs.items),
                                                             slice_bootstrap(preds, inputs.items, seed=seed)))
    return TrainedCell(history=tuple(history), best_epoch=best_epoch, val_best=best_val, test=test,
                       test_predictions=preds, test_bootstrap=bootstrap,
                       n_embedding_parameters=fs.spec.embedding_parameters(),
                       n_dense_parameters=_dense_parameters(model),
                       sharding_plan=getattr(model, "plan_summary", {}), pipeline=kind, val_slices=best_slices)


def _model_and_optimizers(model_name: str, inputs: CellInputs, cfg: TrainConfig, device: torch.device,
                          world: World) -> tuple[nn.Module, list, bool]:
    """(model, optimisers, sharded?). The model is the ranker with its loss inside (RankerTrain). Sharded when
    `rank.sharded` or several ranks: DistributedModelParallel(RankerTrain(ranker)), as TorchRec shards its
    DLRMTrain; the unsharded model is built from the caller's seed and its state copied into the shards, so the
    initial weights are the same whatever the world size. SIM's search unit is the one the cell's plan decided
    (inputs.sim_search)."""
    fs, spec = inputs.features, get_ranker(model_name)
    ctx = BuildContext(search=inputs.sim_search, search_codes=inputs.search_codes)
    model = RankerTrain(spec.build(fs, cfg, ctx))
    if not (cfg.sharded or world.size > 1):
        model = model.to(device)
        return model, make_optimizers(model, cfg), False
    from recsys_models.sharding import shard_model

    state = model.state_dict()
    del model
    local = RankerTrain(spec.build(fs, cfg, dataclasses.replace(ctx, meta=True)))
    dmp, opt = shard_model(local, state, device=device, sharding=cfg.sharding, emb_optimizer=cfg.emb_optimizer,
                           emb_lr=cfg.emb_lr, dense_lr=cfg.lr, weight_decay=cfg.weight_decay,
                           batch_size=cfg.batch_size)
    return dmp, [opt], True


def _dense_parameters(model: nn.Module) -> int:
    """Parameters outside the embedding tables (MLPs, attention, projections); a sharded model's fused tables
    are not counted either."""
    emb = {id(p) for p in embedding_parameters(model)}
    return int(sum(p.numel() for name, p in model.named_parameters()
                   if id(p) not in emb and p.device.type != "meta" and "embedding_bags" not in name))
