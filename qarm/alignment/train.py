"""Alignment: fine-tune the item encoder on mined (trigger, target) pairs with the symmetric in-batch
InfoNCE (QARM §3 "Batch-Contrastive", anchors §1.3) with a sampling-bias (popularity) correction, AdamW with
linear warm-up, early stopping on validation pair recall@k, figures on test pairs never used for a choice
(qarm.alignment.heldout: split by item by default). With config.refit (the default) the model is then
retrained from the same seeded initialisation on all pairs (train + validation + test) for the chosen number
of epochs, as a deployment would, and the refit's embeddings are returned; the held-out figures are the
validation-selected model's, measured on the test pairs before the refit. Returns the aligned embeddings of
ALL items (cold ones included) next to the frozen encoder's, and the trained weights.

Shapes: N items, P pairs, B batch of pairs, D frozen width, d aligned dim (QARM: 64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from qarm.alignment.config import AlignConfig, AlignEpoch, AlignSummary
from qarm.alignment.distributed import embed_items, pair_embeddings, wrap_ddp
from qarm.alignment.heldout import PairSplit, pair_counts, recall_at_k, references, split_pairs
from qarm.alignment.towers import AlignModel, build_align_model
from qarm.artifacts import save_artifact
from qarm.encoders.fusion import ItemFeatures, item_features
from qarm.encoders.image import ImageEncoder
from qarm.encoders.text import TextEncoder
from qarm.errors import QarmError
from qarm.losses import info_nce
from qarm.progress import progress_bar
from qarm.ranks import ONE_PROCESS, Ranks

DEFAULT_ALIGN = AlignConfig()


@dataclass
class AlignResult:
    """embeddings: (N, d) float32 aligned, L2-normalised, ALL items; frozen_embeddings: (N, D) float32
    the frozen encoder's output (the "frozen" baseline); summary: held-out recalls, best epoch, per-epoch
    history (AlignSummary); state_dict: the trained weights (the refit's, when one ran);
    selected_embeddings: (N, d) float32 of the validation-selected model when a refit replaced it (the
    embedding the held-out figures measure), else None."""

    embeddings: np.ndarray
    frozen_embeddings: np.ndarray
    summary: AlignSummary
    config: AlignConfig
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    meta: dict[str, object] = field(default_factory=dict)
    selected_embeddings: np.ndarray | None = None

    @property
    def heldout(self) -> np.ndarray:
        """The embedding held-out test pairs may be measured on: the validation-selected model's (never a refit
        that trained on them)."""
        return self.embeddings if self.selected_embeddings is None else self.selected_embeddings

    def save(self, out_dir: str | Path) -> Path:
        """weights.safetensors (head + trained encoder blocks), config.json, embeddings.npy,
        frozen_embeddings.npy; written atomically."""
        cfg = {"align_config": asdict(self.config), "summary": asdict(self.summary), **self.meta}
        arrays = {"embeddings": self.embeddings, "frozen_embeddings": self.frozen_embeddings}
        if self.selected_embeddings is not None:
            arrays["selected_embeddings"] = self.selected_embeddings
        return save_artifact(out_dir, tensors=self.state_dict, config=cfg, arrays=arrays)


def describe_trained(config: AlignConfig, modalities: Sequence[str] = ("text",), short: bool = False) -> str:
    """What alignment trains, in words: the one source of that wording (summary, report, variant descriptions).

    short: "aligned head" (every encoder stays frozen) or "aligned encoder (...)"; otherwise the full phrase
    (AlignConfig.describe) for these item modalities."""
    if not short:
        return config.describe(tuple(modalities))
    layers = [config.towers.of(m) for m in modalities]
    if all(v == 0 for v in layers):
        return "aligned head"
    if "all" in layers:
        return "aligned encoder (end to end)"
    k = max(v for v in layers if v != "all")
    return f"aligned encoder (top {k} block{'s' if k != 1 else ''})"



def probe_config(config: AlignConfig, epochs: int = 3) -> AlignConfig:
    """The content probe's settings: `config` with the whole text encoder trainable (all layers, end to end), a
    fixed budget of `epochs` epochs without early stopping (the best validation epoch is still kept) and an
    encoder learning rate of 5e-5. Same split, loss and head as alignment: only the trainable part differs; no
    refit (the probe's embeddings are measured on the test pairs, which a refit would have trained on)."""
    if epochs < 1:
        raise QarmError(f"probe: epochs must be >= 1, got {epochs}")
    return replace(config, trainable_layers="all", epochs=epochs, patience=epochs, encoder_lr=5e-5, refit=False)


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
           distributed: bool, log_q: torch.Tensor | None) -> float:
    """One pass over the training pairs (P, 2); log_q: (N,) log sampling probability of each item, or None."""
    perm = rng.permutation(len(train))
    total, steps = 0.0, 0
    for s in range(0, len(perm), config.batch_size):
        ab = torch.from_numpy(train[perm[s : s + config.batch_size]]).to(device)
        if len(ab) < 2:
            continue
        a, b = ab[:, 0], ab[:, 1]
        za, zb = pair_embeddings(model, a, b, distributed=distributed)  # the global batch on every rank
        kw: dict[str, torch.Tensor] = {"anchor_ids": a, "positive_ids": b} if config.mask_duplicates else {}
        if log_q is not None:
            kw |= {"anchor_log_q": config.popularity_correction * log_q[a],
                   "positive_log_q": config.popularity_correction * log_q[b]}
        loss = info_nce(za, zb, temperature=config.temperature, **kw)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total, steps = total + loss.item(), steps + 1
    return total / max(steps, 1)


def sampling_log_q(train: np.ndarray, n_items: int) -> np.ndarray:
    """(N,) float32 log probability that an item fills a given in-batch slot: its share of the training pairs'
    endpoints, add-one smoothed (train: (P, 2) item_idx)."""
    counts = pair_counts(train, n_items).astype(np.float64) + 1.0
    return np.log(counts / counts.sum()).astype(np.float32)


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
    reference: np.ndarray | None = None,
    ranks: Ranks = ONE_PROCESS,
) -> AlignResult:
    """Align item embeddings to mined pairs (see the module docstring).

    pairs: (trigger_idx, target_idx[, source], ...) from `qarm.pairs.mine_pairs`. Items come as precomputed
    frozen `features` and/or as `texts` (N,) / `image_paths` (N,) of ALL items, encoded by `text_encoder`
    (default MiniLM) / `image_encoder` (default Lite0). With features only the fusion head trains; a tower
    (config.trainable_layers per modality) needs its modality's raw items; given both, features are the frozen
    baseline and the raw items feed the towers. seed: the replicate seed (held-out split, head initialisation,
    batch order). device: where the model trains (default the CPU). distributed: every rank of the default
    process group calls `align` with the same arguments; they train one model under DDP, each embedding its
    part of every batch, with the in-batch negatives gathered across ranks (qarm.alignment.distributed); every
    rank returns the same result. reference: (N, D') collaborative item embeddings
    (MinedPairs.u2i_item_embeddings) or None; its test recall joins summary.references. ranks: the ranks that
    share the held-out recall (validation every epoch, the test references): each scores its part of the queries
    and every rank gets the one-process figure exactly (qarm.alignment.heldout.recall_at_k); every rank calls
    `align` with the same arguments.
    """
    if config.towers.of("text") != 0 and texts is not None and text_encoder is None:
        text_encoder = TextEncoder()
    if config.towers.of("image") != 0 and image_paths is not None and image_encoder is None:
        image_encoder = ImageEncoder()
    feats = _frozen_features(features, texts, image_paths, text_encoder, image_encoder, progress)
    n = feats.n_items
    if reference is not None and reference.shape[0] != n:
        raise QarmError(f"align: reference embeddings have {reference.shape[0]} rows, expected one per item ({n})")
    split = split_pairs(pairs, n, config, seed)
    train, val = split.train, split.val
    device = torch.device(device or "cpu")
    model, groups = _build_model(feats, config, texts, text_encoder, progress, seed, image_paths, image_encoder, device)
    trainer = wrap_ddp(model, device) if distributed else model
    opt, sched = _optimiser(groups, config, len(train))
    log_q = _log_q(train, n, config, device)
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    best = ([p.detach().clone() for p in params], -1.0, 0)
    history: list[AlignEpoch] = []
    for epoch in progress_bar(range(1, config.epochs + 1), progress, "align", "epoch"):
        loss = _epoch(trainer, opt, sched, train, config, rng, device, distributed, log_q)
        emb = embed_items(model, n, distributed=distributed).numpy()
        rec = recall_at_k(emb, val[:, 0], val[:, 1], config.recall_k, ranks=ranks) if len(val) else -1.0
        history.append(AlignEpoch(epoch, loss, rec if len(val) else None))
        if rec > best[1] or not len(val):
            best = ([p.detach().clone() for p in params], rec, epoch)
        elif epoch - best[2] >= config.patience:
            break  # early stopping on validation recall@k
    with torch.no_grad():
        for p, saved in zip(params, best[0]):
            p.copy_(saved)
    emb = embed_items(model, n, distributed=distributed).numpy().astype(np.float32)
    frozen = feats.frozen_embeddings()
    modalities = tuple(sorted(feats.dims))
    # the held-out figures: the validation-selected model on the test pairs, before any refit
    summary = _summary(config, split, frozen, emb, reference, best[1] if len(val) else None, best[2], history,
                       modalities, ranks)
    meta = {"n_items": n, "modalities": feats.dims, "text_model": getattr(text_encoder, "model_name", None),
            "image_model": getattr(image_encoder, "model_name", None)}
    if not config.refit:
        return AlignResult(emb, frozen, summary, config, model.trained_state(), meta)
    every = np.concatenate([split.train, split.val, split.test])
    model, groups = _build_model(feats, config, texts, text_encoder, progress, seed, image_paths, image_encoder,
                                 device)
    _refit(model, groups, every, n, best[2], config, seed, device, distributed)
    refit_emb = embed_items(model, n, distributed=distributed).numpy().astype(np.float32)
    summary = replace(summary, refit=True, n_refit_pairs=len(every), refit_epochs=best[2])
    return AlignResult(refit_emb, frozen, summary, config, model.trained_state(), meta, selected_embeddings=emb)


def _optimiser(groups: list[dict[str, object]], config: AlignConfig,
               n_pairs: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a linear warm-up over warmup_frac of the planned steps (config.epochs passes over n_pairs)."""
    opt = torch.optim.AdamW(groups, weight_decay=config.weight_decay)  # type: ignore[arg-type]
    planned = max(1, config.epochs * math.ceil(n_pairs / config.batch_size))
    warm = max(1, round(config.warmup_frac * planned))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warm))


def _log_q(pairs: np.ndarray, n: int, config: AlignConfig, device: torch.device) -> torch.Tensor | None:
    return torch.from_numpy(sampling_log_q(pairs, n)).to(device) if config.popularity_correction > 0 else None


def _refit(model: nn.Module, groups: list[dict[str, object]], every: np.ndarray, n: int, epochs: int,
           config: AlignConfig, seed: int, device: torch.device, distributed: bool) -> None:
    """Retrain `model` (freshly built from the run's seed: the selection run's initialisation) on every pair
    (P_all, 2) for `epochs` epochs: the same optimiser, schedule shape and sampling correction as the selection
    run, batch order seeded by `seed`; no held-out pair is left to choose anything on."""
    trainer = wrap_ddp(model, device) if distributed else model
    opt, sched = _optimiser(groups, config, len(every))
    log_q = _log_q(every, n, config, device)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        _epoch(trainer, opt, sched, every, config, rng, device, distributed, log_q)


def _summary(config: AlignConfig, split: PairSplit, frozen: np.ndarray, emb: np.ndarray,
             reference: np.ndarray | None, val_recall: float | None, best_epoch: int,
             history: list[AlignEpoch], modalities: tuple[str, ...], ranks: Ranks = ONE_PROCESS) -> AlignSummary:
    """Test figures (frozen, aligned, U2I reference, popularity; never used for a choice) into the summary."""
    refs = None
    if len(split.test):
        embs = {"frozen": frozen, "aligned": emb} | ({"u2i": reference} if reference is not None else {})
        refs = references(split.test, split.test_source, embs, k=config.recall_k, split=split.how,
                          popularity=pair_counts(split.train, emb.shape[0]),
                          what={"aligned": describe_trained(config, modalities)}, ranks=ranks)
    def overall(name: str) -> float | None:
        row = refs.row(name) if refs is not None else None
        return row.recall.overall if row is not None else None

    return AlignSummary(k=config.recall_k, frozen_recall=overall("frozen"), aligned_recall=overall("aligned"),
                        best_epoch=best_epoch, history=tuple(history), n_train_pairs=len(split.train),
                        n_val_pairs=len(split.val), trained=describe_trained(config, modalities), split=split.how,
                        val_recall=val_recall, n_test_pairs=len(split.test), references=refs, modalities=modalities,
                        trained_short=describe_trained(config, modalities, short=True))
