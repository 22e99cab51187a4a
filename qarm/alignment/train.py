"""Alignment: fine-tune the item encoder on mined (trigger, target) pairs with the symmetric in-batch
InfoNCE (QARM §3 "Batch-Contrastive", anchors §1.3), AdamW with linear warm-up, early stopping on
held-out pair recall@k. Returns the aligned embeddings of ALL items (cold ones included) next to the
frozen encoder's, and the trained weights.

Shapes: N items, P pairs, B batch of pairs, D frozen width, d aligned dim (QARM: 64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from qarm.alignment.config import AlignConfig, AlignEpoch, AlignSummary
from qarm.alignment.distributed import embed_items, pair_embeddings, wrap_ddp
from qarm.alignment.towers import AlignModel, build_align_model
from qarm.artifacts import save_artifact
from qarm.encoders.fusion import ItemFeatures, item_features
from qarm.encoders.image import ImageEncoder
from qarm.encoders.text import TextEncoder
from qarm.errors import QarmError
from qarm.losses import info_nce

DEFAULT_ALIGN = AlignConfig()


@dataclass
class AlignResult:
    """embeddings: (N, d) float32 aligned, L2-normalised, ALL items; frozen_embeddings: (N, D) float32
    the frozen encoder's output (the "frozen" baseline); summary: held-out recalls, best epoch, per-epoch
    history (AlignSummary); state_dict: the trained weights."""

    embeddings: np.ndarray
    frozen_embeddings: np.ndarray
    summary: AlignSummary
    config: AlignConfig
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    meta: dict[str, object] = field(default_factory=dict)

    def save(self, out_dir: str | Path) -> Path:
        """weights.safetensors (head + trained encoder blocks), config.json, embeddings.npy,
        frozen_embeddings.npy; written atomically."""
        cfg = {"align_config": asdict(self.config), "summary": asdict(self.summary), **self.meta}
        arrays = {"embeddings": self.embeddings, "frozen_embeddings": self.frozen_embeddings}
        return save_artifact(out_dir, tensors=self.state_dict, config=cfg, arrays=arrays)


def describe_trained(config: AlignConfig, modalities: Sequence[str] = ("text",)) -> str:
    """What alignment trains, in words (the report and the variant descriptions say it)."""
    return config.describe(tuple(modalities))


def recall_at_k(emb: np.ndarray, a: np.ndarray, b: np.ndarray, k: int, chunk: int = 2048) -> float:
    """Held-out pair recall@k, both directions: share of (query, answer) in (a->b, b->a) whose answer
    is among the k items with the highest inner product to the query, the query itself excluded.
    emb: (N, D) float32; a, b: (P,) item_idx."""
    q, t = np.concatenate([a, b]), np.concatenate([b, a])
    if len(q) == 0:
        return float("nan")
    e = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
    hits = 0
    for s in range(0, len(q), chunk):
        qq, tt = torch.from_numpy(q[s : s + chunk]), torch.from_numpy(t[s : s + chunk])
        scores = e[qq] @ e.T
        scores[torch.arange(len(qq)), qq] = -torch.inf
        target = scores[torch.arange(len(qq)), tt]
        # rank = items strictly better than the answer (ties count in the answer's favour)
        hits += int(((scores > target[:, None]).sum(1) < k).sum())
    return hits / len(q)


def split_pairs(pairs: pl.DataFrame, n_items: int, config: AlignConfig, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train (P_t, 2), val (P_v, 2)) int64 arrays of (trigger_idx, target_idx), a seeded split."""
    for col in ("trigger_idx", "target_idx"):
        if col not in pairs.columns:
            raise QarmError(f"align: pairs frame lacks column {col!r} (expected trigger_idx, target_idx)")
    ab = pairs.select("trigger_idx", "target_idx").to_numpy().astype(np.int64)
    if len(ab) < 2 or ab.min() < 0 or ab.max() >= n_items:
        raise QarmError(f"align: need >= 2 pairs with item_idx in [0, {n_items}); got {len(ab)} pairs")
    perm = np.random.default_rng(seed).permutation(len(ab))
    n_val = min(round(config.val_frac * len(ab)), config.max_val_pairs, len(ab) - 1)
    return ab[perm[n_val:]], ab[perm[:n_val]]


def _build_model(
    feats: ItemFeatures, config: AlignConfig, texts: Sequence[str] | None, text_encoder: TextEncoder | None,
    progress: bool, seed: int, image_paths: Sequence[str | Path | None] | None = None,
    image_encoder: ImageEncoder | None = None, device: str | torch.device | None = None,
) -> tuple[AlignModel, list[dict[str, object]]]:
    torch.manual_seed(seed)
    return build_align_model(feats, config, texts=texts, text_encoder=text_encoder, image_paths=image_paths,
                             image_encoder=image_encoder, device=device, progress=progress)


def _epoch(model: nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
           train: np.ndarray, config: AlignConfig, rng: np.random.Generator, device: torch.device,
           distributed: bool) -> float:
    perm = rng.permutation(len(train))
    total, steps = 0.0, 0
    for s in range(0, len(perm), config.batch_size):
        ab = torch.from_numpy(train[perm[s : s + config.batch_size]]).to(device)
        if len(ab) < 2:
            continue
        a, b = ab[:, 0], ab[:, 1]
        za, zb = pair_embeddings(model, a, b, distributed=distributed)  # the global batch on every rank
        ids = {"anchor_ids": a, "positive_ids": b} if config.mask_duplicates else {}
        loss = info_nce(za, zb, temperature=config.temperature, **ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total, steps = total + loss.item(), steps + 1
    return total / max(steps, 1)


def _frozen_features(
    features: ItemFeatures | None, texts: Sequence[str] | None, image_paths: Sequence[str | Path | None] | None,
    text_encoder: TextEncoder | None, image_encoder: ImageEncoder | None, progress: bool,
) -> ItemFeatures:
    if features is not None:  # raw texts / image_paths given too feed the trained towers only
        return features
    if texts is None and image_paths is None:
        raise QarmError("align: give features, or texts and/or image_paths (ALL items, indexed by item_idx)")
    return item_features(texts, image_paths, text_encoder=text_encoder, image_encoder=image_encoder, progress=progress)


def align(
    pairs: pl.DataFrame,
    *,
    features: ItemFeatures | None = None,
    texts: Sequence[str] | None = None,
    image_paths: Sequence[str | Path | None] | None = None,
    text_encoder: TextEncoder | None = None,
    image_encoder: ImageEncoder | None = None,
    config: AlignConfig = DEFAULT_ALIGN,
    seed: int = 0,
    progress: bool = False,
    device: str | torch.device | None = None,
    distributed: bool = False,
) -> AlignResult:
    """Align item embeddings to mined pairs (see the module docstring).

    pairs: (trigger_idx, target_idx, ...) from `qarm.pairs.mine_pairs`. Items come as precomputed frozen
    `features` and/or as `texts` (N,) / `image_paths` (N,) of ALL items, encoded by `text_encoder` (default
    MiniLM) / `image_encoder` (default Lite0). With features only the fusion head trains; a tower
    (config.trainable_layers per modality) needs its modality's raw items; given both, features are the frozen
    baseline and the raw items feed the towers. seed: the replicate seed (held-out pair draw, head
    initialisation, batch order). device: where the model trains (default the CPU). distributed: every rank of
    the default process group calls `align` with the same arguments; they train one model under DDP, each
    embedding its part of every batch, with the in-batch negatives gathered across ranks
    (qarm.alignment.distributed); every rank returns the same result.
    """
    if config.towers.of("text") != 0 and texts is not None and text_encoder is None:
        text_encoder = TextEncoder()
    if config.towers.of("image") != 0 and image_paths is not None and image_encoder is None:
        image_encoder = ImageEncoder()
    feats = _frozen_features(features, texts, image_paths, text_encoder, image_encoder, progress)
    n = feats.n_items
    train, val = split_pairs(pairs, n, config, seed)
    frozen = feats.frozen_embeddings()
    frozen_recall = recall_at_k(frozen, val[:, 0], val[:, 1], config.recall_k) if len(val) else None
    device = torch.device(device or "cpu")
    model, groups = _build_model(feats, config, texts, text_encoder, progress, seed, image_paths, image_encoder, device)
    trainer = wrap_ddp(model, device) if distributed else model
    opt = torch.optim.AdamW(groups, weight_decay=config.weight_decay)  # type: ignore[arg-type]
    planned = max(1, config.epochs * math.ceil(len(train) / config.batch_size))
    warm = max(1, round(config.warmup_frac * planned))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warm))
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    best = ([p.detach().clone() for p in params], -1.0, 0)
    history: list[AlignEpoch] = []
    epochs = range(1, config.epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="align", unit="epoch")
    for epoch in epochs:
        loss = _epoch(trainer, opt, sched, train, config, rng, device, distributed)
        emb = embed_items(model, n, distributed=distributed).numpy()
        rec = recall_at_k(emb, val[:, 0], val[:, 1], config.recall_k) if len(val) else -1.0
        history.append(AlignEpoch(epoch, loss, rec if len(val) else None))
        if rec > best[1] or not len(val):
            best = ([p.detach().clone() for p in params], rec, epoch)
        elif epoch - best[2] >= config.patience:
            break  # early stopping on held-out recall@k
    with torch.no_grad():
        for p, saved in zip(params, best[0]):
            p.copy_(saved)
    emb = embed_items(model, n, distributed=distributed).numpy().astype(np.float32)
    aligned_recall = recall_at_k(emb, val[:, 0], val[:, 1], config.recall_k) if len(val) else None
    trained = describe_trained(config, sorted(feats.dims))
    summary = AlignSummary(k=config.recall_k, frozen_recall=frozen_recall, aligned_recall=aligned_recall,
                           best_epoch=best[2], history=tuple(history), n_train_pairs=len(train),
                           n_val_pairs=len(val), trained=trained, modalities=tuple(sorted(feats.dims)))
    meta = {"n_items": n, "modalities": feats.dims, "text_model": getattr(text_encoder, "model_name", None),
            "image_model": getattr(image_encoder, "model_name", None)}
    return AlignResult(emb, frozen, summary, config, model.trained_state(), meta)
