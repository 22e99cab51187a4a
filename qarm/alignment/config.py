"""Settings and records of the alignment stage (QARM §3; the paper leaves these choices open, anchors §1.10).
Imports no torch, so a suite config is read and checked without loading it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qarm.errors import require


@dataclass(frozen=True)
class AlignConfig:
    """dim: aligned embedding width d (QARM: 64); temperature: InfoNCE tau; batch_size: pairs per step (the
    in-batch negatives); epochs: at most; lr: head learning rate; encoder_lr: learning rate of trainable
    transformer blocks; weight_decay: AdamW; warmup_frac: share of the planned steps with a linear warm-up;
    trainable_layers: 0 = projection head only over cached frozen features, k = the top k transformer blocks
    too, "all" (or -1) = the whole encoder; hidden: 0 = linear head, > 0 = an MLP of that width;
    val_frac: held-out share of pairs for early stopping and the recall figures (0 = none); recall_k,
    patience: early stopping on held-out pair recall@k; mask_duplicates: mask in-batch duplicate items out of
    the negatives; max_val_pairs: cap on the held-out pairs."""

    dim: int = 64
    temperature: float = 0.07
    batch_size: int = 256
    epochs: int = 20
    lr: float = 5e-3
    encoder_lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    trainable_layers: int | Literal["all"] = 0
    hidden: int = 256
    val_frac: float = 0.1
    recall_k: int = 10
    patience: int = 5
    mask_duplicates: bool = True
    max_val_pairs: int = 5000

    def __post_init__(self) -> None:
        require(self, "dim", self.dim >= 1, "an integer >= 1")
        require(self, "temperature", self.temperature > 0, "a number > 0")
        require(self, "batch_size", self.batch_size >= 2, "an integer >= 2 (in-batch negatives need a pair)")
        require(self, "epochs", self.epochs >= 1, "an integer >= 1")
        require(self, "lr", self.lr > 0, "a number > 0")
        require(self, "encoder_lr", self.encoder_lr > 0, "a number > 0")
        require(self, "weight_decay", self.weight_decay >= 0, "a number >= 0")
        require(self, "warmup_frac", 0 <= self.warmup_frac <= 1, "a fraction in [0, 1]")
        layers = self.trainable_layers
        require(self, "trainable_layers", layers == "all" or (isinstance(layers, int) and layers >= -1),
                "0 (head only), a block count k >= 1, or 'all' (-1 also means all)")
        require(self, "hidden", self.hidden >= 0, "an integer >= 0 (0 = linear head)")
        require(self, "val_frac", 0 <= self.val_frac < 1, "a fraction in [0, 1)")
        require(self, "recall_k", self.recall_k >= 1, "an integer >= 1")
        require(self, "patience", self.patience >= 1, "an integer >= 1 (epochs without a better held-out recall)")
        require(self, "max_val_pairs", self.max_val_pairs >= 1, "an integer >= 1")

    @property
    def layers(self) -> int | Literal["all"]:
        """trainable_layers with -1 spelled "all"."""
        return "all" if self.trainable_layers == -1 else self.trainable_layers


@dataclass(frozen=True)
class AlignEpoch:
    """One epoch of alignment: mean InfoNCE loss over its steps, held-out pair recall@k after it (None
    without held-out pairs)."""

    epoch: int
    loss: float
    val_recall: float | None


@dataclass(frozen=True)
class AlignSummary:
    """What the alignment stage reports: held-out pair recall@k of the frozen and the aligned embedding (None
    without held-out pairs), the epoch whose weights were kept, the per-epoch history, pair counts and what
    was trained ("head", or "head + top k text blocks", ...)."""

    k: int
    frozen_recall: float | None
    aligned_recall: float | None
    best_epoch: int
    history: tuple[AlignEpoch, ...]
    n_train_pairs: int
    n_val_pairs: int
    trained: str
