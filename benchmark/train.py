"""Training loop of one benchmark cell (model, variant, seed): `train_cell(...) -> CellResult`.

Adam for dense parameters; Adagrad or Adam for embedding tables (plain torch optimizers over the
unsharded TorchRec modules, or the TorchRec fused optimizer in backward when `sharded`, DLRM only).
Early stopping on validation AUC (BARS/FuxiCTR: `monitor: AUC`, patience 2); the test split is
scored whenever validation AUC improves, so the reported test metrics are those of the best epoch.
Deterministic on CPU under a seed (init and shuffling draw from seeded generators). Never logs to
MLflow: the lead logs the returned values (and per epoch through `on_epoch`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection
from tqdm import tqdm

from benchmark.cell import CellInputs
from benchmark.errors import ConfigError
from benchmark.metrics import all_metrics, slice_bootstrap, slice_metrics
from benchmark.records import EpochRecord
from recsys_models.batching import SplitArrays, iter_batches, split_arrays
from recsys_models.config import TrainConfig
from recsys_models.factory import batch_layout, build_model
from recsys_models.features import FeatureSet, Layout, RankBatch


@dataclass(frozen=True, eq=False)
class TrainedCell:
    """What training one cell gives: per-epoch history, the best validation epoch and its metrics, test metrics
    per slice (all, cold, warm, pop_bucket_<b>) at that epoch, the test predictions (user_idx, item_idx, label,
    pred) and the parameter count."""

    history: tuple[EpochRecord, ...]
    best_epoch: int
    val_best: dict[str, float]
    test: dict[str, dict[str, float]]
    test_predictions: pl.DataFrame
    n_embedding_parameters: int
    n_dense_parameters: int
    test_bootstrap: dict[str, tuple[float, float] | None]


def embedding_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the TorchRec embedding tables (EmbeddingBagCollection / EmbeddingCollection)."""
    return [p for m in model.modules() if isinstance(m, EmbeddingBagCollection | EmbeddingCollection)
            for p in m.parameters()]


def make_optimizers(model: nn.Module, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    emb = embedding_parameters(model)
    emb_ids = {id(p) for p in emb}
    dense = [p for p in model.parameters() if id(p) not in emb_ids]
    emb_cls = torch.optim.Adagrad if cfg.emb_optimizer == "adagrad" else torch.optim.Adam
    return [torch.optim.Adam(dense, lr=cfg.lr, weight_decay=cfg.weight_decay), emb_cls(emb, lr=cfg.emb_lr)]


@torch.no_grad()
def predict(model: nn.Module, fs: FeatureSet, arrays: SplitArrays, batch_size: int,
            layout: Layout = "pooled") -> np.ndarray:
    """Click probabilities (n,) float64 of a split, in row order."""
    model.eval()
    out = [torch.sigmoid(model(b)).double() for b in iter_batches(fs, arrays, batch_size, layout=layout)]
    return torch.cat(out).numpy() if out else np.zeros(0)


def train_step(model: Callable[[RankBatch], torch.Tensor], optimizers: list[torch.optim.Optimizer],
               batch: RankBatch, loss_fn: nn.Module) -> torch.Tensor:
    """One optimisation step on one batch; returns the (graph-free) loss. Also timed by `perf rank`."""
    loss = loss_fn(model(batch), batch.labels)
    for opt in optimizers:
        opt.zero_grad()
    loss.backward()
    for opt in optimizers:
        opt.step()
    return loss.detach()


def _train_epoch(
    model: nn.Module, fs: FeatureSet, arrays: SplitArrays, cfg: TrainConfig,
    optimizers: list[torch.optim.Optimizer], generator: torch.Generator, desc: str, progress: bool,
    layout: Layout,
) -> tuple[float, float]:
    """One pass over the training split -> (mean loss, seconds)."""
    model.train()
    loss_fn = nn.BCEWithLogitsLoss()
    total, seen, start = 0.0, 0, time.perf_counter()
    bar = tqdm(total=len(arrays), desc=desc, unit="row", disable=not progress, leave=False)
    for batch in iter_batches(fs, arrays, cfg.batch_size, generator, layout):
        loss = train_step(model, optimizers, batch, loss_fn)
        b = int(batch.labels.shape[0])
        total, seen = total + float(loss.detach()) * b, seen + b
        bar.update(b)
        bar.set_postfix(loss=f"{total / seen:.4f}", samples_s=f"{seen / (time.perf_counter() - start):,.0f}")
    bar.close()
    return total / max(seen, 1), time.perf_counter() - start


def train_cell(
    model_name: str,
    inputs: CellInputs,
    cfg: TrainConfig,
    seed: int,
    *,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = False,
) -> TrainedCell:
    """Train `model_name` on the cell's features; early-stop on val AUC; test metrics at the best epoch.

    on_epoch(epoch, {"train_loss", "val_auc", "val_gauc", "val_logloss", "epoch_seconds"}) after each epoch.
    """
    if cfg.sharded and model_name != "dlrm":
        raise ConfigError(f"rank.sharded: only the DLRM is sharded (EmbeddingBagCollection), not {model_name!r}")
    fs = inputs.features
    n_items, n_users = fs.spec.n_items, fs.spec.n_users
    splits = {name: split_arrays(getattr(inputs, name), max_hist=cfg.max_hist, n_items=n_items, n_users=n_users,
                                 name=name) for name in ("train", "val", "test")}
    torch.manual_seed(seed)
    model, optimizers = _model_and_optimizers(model_name, fs, cfg, inputs.search_codes)
    layout = batch_layout(model_name)
    generator = torch.Generator().manual_seed(seed)
    history: list[EpochRecord] = []
    best_auc, best_epoch, best_val, test_pred = -math.inf, 0, {}, np.zeros(0)
    for epoch in range(1, cfg.epochs + 1):
        loss, secs = _train_epoch(model, fs, splits["train"], cfg, optimizers, generator,
                                  f"{model_name} epoch {epoch}", progress, layout)
        val = splits["val"]
        val_pred = predict(model, fs, val, cfg.eval_batch_size, layout)
        val_m = all_metrics(val.user_idx.numpy(), val.labels.numpy(), val_pred)
        history.append(EpochRecord(epoch, loss, val_m, secs, len(splits["train"]) / max(secs, 1e-9)))
        if on_epoch is not None:
            on_epoch(epoch, {"train_loss": loss, "val_auc": val_m["auc"], "val_gauc": val_m["gauc"],
                             "val_logloss": val_m["logloss"], "epoch_seconds": secs})
        score = val_m["auc"] if not math.isnan(val_m["auc"]) else -val_m["logloss"]
        if score > best_auc:
            best_auc, best_epoch, best_val = score, epoch, val_m
            test_pred = predict(model, fs, splits["test"], cfg.eval_batch_size, layout)
        elif epoch - best_epoch >= max(cfg.patience, 1):
            break
    preds = inputs.test.select("user_idx", "item_idx", "label").with_columns(pred=pl.Series(test_pred))
    return TrainedCell(history=tuple(history), best_epoch=best_epoch, val_best=best_val,
                       test=slice_metrics(preds, inputs.items), test_predictions=preds,
                       test_bootstrap=slice_bootstrap(preds, inputs.items, seed=seed),
                       n_embedding_parameters=fs.spec.embedding_parameters(),
                       n_dense_parameters=_dense_parameters(model))


def _model_and_optimizers(model_name: str, fs: FeatureSet, cfg: TrainConfig,
                          search_codes: torch.Tensor | None) -> tuple[nn.Module, list]:
    if cfg.sharded:
        from recsys_models.sharding import shard_dlrm

        ranker = build_model(model_name, fs, cfg, meta=True)
        dmp, opt = shard_dlrm(ranker, emb_optimizer=cfg.emb_optimizer, emb_lr=cfg.emb_lr, dense_lr=cfg.lr,
                              weight_decay=cfg.weight_decay)
        return dmp, [opt]
    model = build_model(model_name, fs, cfg, search_codes=search_codes)
    return model, make_optimizers(model, cfg)


def _dense_parameters(model: nn.Module) -> int:
    """Parameters outside the embedding tables (MLPs, attention, projections); a sharded model's fused tables
    are not counted either."""
    emb = {id(p) for p in embedding_parameters(model)}
    return int(sum(p.numel() for name, p in model.named_parameters()
                   if id(p) not in emb and p.device.type != "meta" and "embedding_bags" not in name))
