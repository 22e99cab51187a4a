"""Settings of the codes stage: RQ-Kmeans / RQ-VAE / VQ top-k codes of item embeddings. Imports no torch.

    [quantize]          QuantizeConfig: which quantizer feeds the *_codes variants, the code shape L x K
    [quantize.rq_vae]   RQVAEConfig: the learned quantizer's network and training (TIGER baseline)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from qarm.errors import require

QuantizerName = Literal["rq_kmeans", "rq_vae", "vq"]


@dataclass(frozen=True)
class RQVAEConfig:
    """RQ-VAE network and training (TIGER: 768 -> 512 -> 256 -> 128 -> 32, beta 0.25); the code shape
    (levels L, codebook size K) is the quantize section's."""

    hidden: tuple[int, ...] = (128, 64)
    latent_dim: int = 32
    beta: float = 0.25  # TIGER: commitment weight
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 50
    batch_size: int = 256
    kmeans_init: bool = True
    kmeans_niter: int = 20

    def __post_init__(self) -> None:
        require(self, "hidden", all(h >= 1 for h in self.hidden), "a list of positive layer widths")
        for name in ("latent_dim", "epochs", "batch_size", "kmeans_niter"):
            require(self, name, getattr(self, name) >= 1, "an integer >= 1")
        require(self, "beta", self.beta >= 0, "a number >= 0")
        require(self, "lr", self.lr > 0, "a number > 0")
        require(self, "weight_decay", self.weight_decay >= 0, "a number >= 0")


@dataclass(frozen=True)
class QuantizeConfig:
    """quantizer: the code behind the *_codes variants (RQ-Kmeans = QARM's RQ code, RQ-VAE, or the VQ top-k
    bag); levels L and codebook_size K of the residual codes (K is capped at the number of items); niter:
    k-means iterations per level; vq_k: neighbours in a VQ code (QARM: 25); dedup: TIGER's extra level making
    every item's code unique."""

    quantizer: QuantizerName = "rq_kmeans"
    levels: int = 3
    codebook_size: int = 64
    niter: int = 25
    vq_k: int = 25
    dedup: bool = False
    rq_vae: RQVAEConfig = field(default_factory=RQVAEConfig)

    def __post_init__(self) -> None:
        for name in ("levels", "niter", "vq_k"):
            require(self, name, getattr(self, name) >= 1, "an integer >= 1")
        require(self, "codebook_size", self.codebook_size >= 2, "an integer >= 2")
