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
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
import torch
from torch import nn
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection
from tqdm import tqdm

from benchmark.errors import ConfigError
from benchmark.metrics import all_metrics, slice_metrics
from benchmark.variants import SplitArrays, build_features, iter_batches, split_arrays
from recsys_models.din import build_din
from recsys_models.dlrm import build_dlrm
from recsys_models.features import FeatureSet, RankBatch
from recsys_models.sim import build_sim

MODELS = ("dlrm", "din", "sim")


@dataclass(frozen=True)
class DlrmConfig:
    dense_arch: tuple[int, ...] = (64,)
    over_arch: tuple[int, ...] = (128, 64)
    dcn: bool = False  # torchrec DLRM_DCN (low-rank DCN-v2 interaction) instead of dot interaction
    dcn_layers: int = 3
    dcn_low_rank: int = 16


@dataclass(frozen=True)
class DinConfig:
    attention_hidden: tuple[int, ...] = (36,)  # DIN paper (Zhou et al. 2018): an activation unit of 36 units
    attention_softmax: bool = False
    mlp: tuple[int, ...] = (128, 64)
    max_len: int = 50


@dataclass(frozen=True)
class SimConfig:
    search: Literal["hard", "soft"] = "hard"  # variants without RQ codes fall back to soft
    prefix_depth: int = 1
    top_k: int = 50
    recent: int = 10
    heads: int = 2
    mlp: tuple[int, ...] = (128, 64)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 1024
    eval_batch_size: int = 4096
    lr: float = 1e-3
    emb_lr: float = 0.05
    emb_optimizer: Literal["adagrad", "adam"] = "adagrad"
    embedding_dim: int = 16
    patience: int = 2
    weight_decay: float = 0.0
    max_hist: int = 50
    sharded: bool = False  # DLRM only: single-process DMP, fused TBE tables + fused optimizer
    dlrm: DlrmConfig = field(default_factory=DlrmConfig)
    din: DinConfig = field(default_factory=DinConfig)
    sim: SimConfig = field(default_factory=SimConfig)


@dataclass(frozen=True, eq=False)
class CellData:
    """Inputs of a cell. Frames as produced by the data stage; arrays by the item-side stages.

    train/val/test: user_idx, item_idx, ts, label, hist_item_idx.  items: item_idx (0..N-1), is_cold,
    pop_bucket.  users: user_idx + categorical columns, or None.  codes: (N, L) int64; vq_codes: (N, k)
    int64; dense: (N, d) float32 -- of the variant's content source (frozen or aligned).
    """

    train: pl.DataFrame
    val: pl.DataFrame
    test: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame | None = None
    codes: np.ndarray | None = None
    codebook_size: int | None = None
    vq_codes: np.ndarray | None = None
    dense: np.ndarray | None = None


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val: dict[str, float]  # auc, gauc, logloss, n, n_pos
    seconds: float
    samples_per_s: float


@dataclass(frozen=True, eq=False)
class CellResult:
    model: str
    variant: str
    seed: int
    history: tuple[EpochRecord, ...]
    best_epoch: int
    val_best: dict[str, float]
    test: dict[str, dict[str, float]]  # slice -> metrics; slices all, cold, warm, pop_bucket_<b>
    test_predictions: pl.DataFrame  # user_idx, item_idx, label, pred (probability)
    sim_search: str | None  # the GSU actually used (soft when the variant has no codes)
    n_parameters: int


def build_model(model_name: str, fs: FeatureSet, cfg: TrainConfig, *, meta: bool = False) -> nn.Module:
    """The ranker of `model_name` for feature set `fs`. meta=True: DLRM tables on the meta device (DMP)."""
    spec = fs.spec
    if model_name == "dlrm":
        c = cfg.dlrm
        return build_dlrm(spec, dense_arch=c.dense_arch, over_arch=c.over_arch, dcn=c.dcn, dcn_layers=c.dcn_layers,
                          dcn_low_rank=c.dcn_low_rank, device=torch.device("meta") if meta else None)
    if model_name == "din":
        d = cfg.din
        return build_din(spec, fs.content, attention_hidden=d.attention_hidden, attention_softmax=d.attention_softmax,
                         mlp_hidden=d.mlp, max_len=d.max_len)
    if model_name == "sim":
        s = cfg.sim
        return build_sim(spec, codes=fs.codes, content=fs.content, search=s.search, prefix_depth=s.prefix_depth,
                         top_k=s.top_k, recent=s.recent, heads=s.heads, mlp_hidden=s.mlp)
    raise ConfigError(f"rank.model: unknown {model_name!r}; expected one of {', '.join(MODELS)}")


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


def _validate(model_name: str, cfg: TrainConfig) -> None:
    if model_name not in MODELS:
        raise ConfigError(f"rank.model: unknown {model_name!r}; expected one of {', '.join(MODELS)}")
    for name in ("epochs", "batch_size", "eval_batch_size", "embedding_dim", "max_hist"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"rank.{name}: must be > 0, got {getattr(cfg, name)}")
    if cfg.patience < 0:
        raise ConfigError(f"rank.patience: must be >= 0, got {cfg.patience}")
    if cfg.emb_optimizer not in ("adagrad", "adam"):
        raise ConfigError(f"rank.emb_optimizer: expected 'adagrad' or 'adam', got {cfg.emb_optimizer!r}")
    if cfg.sharded and model_name != "dlrm":
        raise ConfigError(f"rank.sharded: only the DLRM is sharded (EmbeddingBagCollection), not {model_name!r}")


@torch.no_grad()
def predict(model: nn.Module, fs: FeatureSet, arrays: SplitArrays, batch_size: int) -> np.ndarray:
    """Click probabilities (n,) float64 of a split, in row order."""
    model.eval()
    out = [torch.sigmoid(model(b)).double() for b in iter_batches(fs, arrays, batch_size)]
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
) -> tuple[float, float]:
    """One pass over the training split -> (mean loss, seconds)."""
    model.train()
    loss_fn = nn.BCEWithLogitsLoss()
    total, seen, start = 0.0, 0, time.perf_counter()
    bar = tqdm(total=len(arrays), desc=desc, unit="row", disable=not progress, leave=False)
    for batch in iter_batches(fs, arrays, cfg.batch_size, generator):
        loss = train_step(model, optimizers, batch, loss_fn)
        b = int(batch.labels.shape[0])
        total, seen = total + float(loss.detach()) * b, seen + b
        bar.update(b)
        bar.set_postfix(loss=f"{total / seen:.4f}", samples_s=f"{seen / (time.perf_counter() - start):,.0f}")
    bar.close()
    return total / max(seen, 1), time.perf_counter() - start


def train_cell(
    model_name: str,
    variant: str,
    data: CellData,
    cfg: TrainConfig,
    seed: int,
    *,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = False,
) -> CellResult:
    """Train `model_name` on `variant`'s features; early-stop on val AUC; test metrics at the best epoch.

    on_epoch(epoch, {"train_loss", "val_auc", "val_gauc", "val_logloss", "epoch_seconds"}) after each epoch.
    """
    _validate(model_name, cfg)
    n_items = data.items.height
    n_users = _n_users(data)
    fs = build_features(variant, n_items=n_items, n_users=n_users, embedding_dim=cfg.embedding_dim, users=data.users,
                        codes=data.codes, codebook_size=data.codebook_size, vq_codes=data.vq_codes, dense=data.dense)
    splits = {name: split_arrays(getattr(data, name), max_hist=cfg.max_hist, n_items=n_items, n_users=n_users,
                                 name=name) for name in ("train", "val", "test")}
    torch.manual_seed(seed)
    model, optimizers = _model_and_optimizers(model_name, fs, cfg)
    generator = torch.Generator().manual_seed(seed)
    history: list[EpochRecord] = []
    best_auc, best_epoch, best_val, test_pred = -math.inf, 0, {}, np.zeros(0)
    for epoch in range(1, cfg.epochs + 1):
        loss, secs = _train_epoch(model, fs, splits["train"], cfg, optimizers, generator,
                                  f"{model_name}/{variant} epoch {epoch}", progress)
        val = splits["val"]
        val_m = all_metrics(val.user_idx.numpy(), val.labels.numpy(), predict(model, fs, val, cfg.eval_batch_size))
        history.append(EpochRecord(epoch, loss, val_m, secs, len(splits["train"]) / max(secs, 1e-9)))
        if on_epoch is not None:
            on_epoch(epoch, {"train_loss": loss, "val_auc": val_m["auc"], "val_gauc": val_m["gauc"],
                             "val_logloss": val_m["logloss"], "epoch_seconds": secs})
        score = val_m["auc"] if not math.isnan(val_m["auc"]) else -val_m["logloss"]
        if score > best_auc:
            best_auc, best_epoch, best_val = score, epoch, val_m
            test_pred = predict(model, fs, splits["test"], cfg.eval_batch_size)
        elif epoch - best_epoch >= max(cfg.patience, 1):
            break
    preds = data.test.select("user_idx", "item_idx", "label").with_columns(pred=pl.Series(test_pred))
    return CellResult(
        model=model_name, variant=variant, seed=seed, history=tuple(history), best_epoch=best_epoch,
        val_best=best_val, test=slice_metrics(preds, data.items), test_predictions=preds,
        sim_search=getattr(_inner(model), "search", None), n_parameters=_count_parameters(model),
    )


def _model_and_optimizers(model_name: str, fs: FeatureSet, cfg: TrainConfig) -> tuple[nn.Module, list]:
    if cfg.sharded:
        from recsys_models.sharding import shard_dlrm

        ranker = build_model(model_name, fs, cfg, meta=True)
        dmp, opt = shard_dlrm(ranker, emb_optimizer=cfg.emb_optimizer, emb_lr=cfg.emb_lr, dense_lr=cfg.lr,
                              weight_decay=cfg.weight_decay)
        return dmp, [opt]
    model = build_model(model_name, fs, cfg)
    return model, make_optimizers(model, cfg)


def _inner(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def _count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.device.type != "meta"))


def _n_users(data: CellData) -> int:
    mx = max(int(f["user_idx"].max() or 0) if f.height else 0 for f in (data.train, data.val, data.test))
    if data.users is not None and data.users.height:
        mx = max(mx, int(data.users["user_idx"].max()))
    return mx + 1
