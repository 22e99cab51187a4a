"""Settings of the codes stage: RQ-Kmeans / RQ-VAE / VQ top-k codes of item embeddings. Imports no torch.

    [quantize]          QuantizeConfig: which quantizer feeds the *_codes variants, the code shape L x K, and
                        the RQ-Kmeans level options (FSQ last level = QARM V2, balanced k-means = OneRec)
    [quantize.rq_vae]   RQVAEConfig: the learned quantizer's network and training (TIGER baseline)
    [quantize.tokens]   TokenizeConfig: how a ranker turns an item's code into embedding-table tokens
                        (Singh et al. 2024: unigram, prefix n-gram, bigram, SentencePiece)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from qarm.errors import require

QuantizerName = Literal["rq_kmeans", "rq_vae", "vq"]  # the built-in quantizers; a caller may register more
LastLevel = Literal["kmeans", "fsq"]
TokenScheme = Literal["unigram", "prefix_ngram", "bigram", "spm"]
TOKEN_SCHEMES: tuple[str, ...] = ("unigram", "prefix_ngram", "bigram", "spm")
Unseen = Literal["keep", "shared"]
FitOn = Literal["warm", "all"]


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
class TokenizeConfig:
    """How the rankers turn an item's code (N, L) into embedding-table tokens (qarm.quantize.tokenize).

    scheme: "unigram" (one table per level, the codes as they are), "prefix_ngram" (table j holds the prefix of
    length j + 1), "bigram" (a table per adjacent level pair), "spm" (one bag table of SentencePiece pieces
    learned on the training items' code sequences); table_size: rows of an n-gram table whose exact vocabulary
    is larger (hashed, seeded); spm_vocab_size: requested SentencePiece vocabulary (capped by what the
    training sequences support); seed: the hash salt and SentencePiece's seed; unseen: what happens to a code
    whose prefix fewer than unseen_min_count training items share (rows the ranker trains little or never):
    "keep" it, or "shared": from that level on the item gets one extra id per level, shared by every such item,
    training items with rare prefixes included, so the shared rows are trained (qarm.quantize.fallback: the
    code is cut where it leaves the training distribution; min count 2: a prefix only its own item has is
    rare)."""

    scheme: TokenScheme = "unigram"
    table_size: int = 4096
    spm_vocab_size: int = 1024
    seed: int = 0
    unseen: Unseen = "keep"
    unseen_min_count: int = 2

    def __post_init__(self) -> None:
        require(self, "scheme", self.scheme in TOKEN_SCHEMES, "one of " + ", ".join(TOKEN_SCHEMES))
        require(self, "table_size", self.table_size >= 1, "an integer >= 1")
        require(self, "spm_vocab_size", self.spm_vocab_size >= 2, "an integer >= 2")
        require(self, "seed", self.seed >= 0, "an integer >= 0")
        require(self, "unseen", self.unseen in ("keep", "shared"), "one of 'keep', 'shared'")
        require(self, "unseen_min_count", self.unseen_min_count >= 1, "an integer >= 1")


@dataclass(frozen=True)
class QuantizeConfig:
    """quantizer: the code behind the *_codes variants (RQ-Kmeans = QARM's RQ code, RQ-VAE, or the VQ top-k
    bag); levels L and codebook_size K of the residual codes (K is capped at the number of items); niter:
    k-means iterations per level; vq_k: neighbours in a VQ code (QARM: 25); dedup: TIGER's extra level making
    every item's code unique (added after the L levels, whatever they are).

    RQ-Kmeans code sets only: last_level "fsq" quantises level L by finite scalar quantisation of the residual
    left after L - 1 k-means levels (QARM V2's Res-KmeansFSQ) with fsq_levels bins per projected dim, so level
    L's vocabulary is prod(fsq_levels) (default 4 x 4 x 4 = 64 = the default K); balanced: every k-means level
    uses equal-size clusters (OneRec's balanced k-means); balanced_iters: balanced assign/update rounds after
    the plain k-means that seeds them. tokens: how the rankers tokenise the codes.

    fit_on: which items a residual quantizer's codebooks are fitted on: "warm" (the items with a training
    impression, as a deployment fits them; every item, cold ones included, is then encoded against them) or
    "all" (every item's embedding, cold ones included: the behaviour before issue 20). A VQ bag always searches
    warm items."""

    quantizer: str = "rq_kmeans"
    levels: int = 3
    codebook_size: int = 64
    niter: int = 25
    vq_k: int = 25
    dedup: bool = False
    last_level: LastLevel = "kmeans"
    fsq_levels: tuple[int, ...] = (4, 4, 4)
    balanced: bool = False
    balanced_iters: int = 10
    rq_vae: RQVAEConfig = field(default_factory=RQVAEConfig)
    tokens: TokenizeConfig = field(default_factory=TokenizeConfig)
    fit_on: FitOn = "warm"

    def __post_init__(self) -> None:
        require(self, "fit_on", self.fit_on in ("warm", "all"), "'warm' or 'all'")
        require(self, "quantizer", bool(self.quantizer) and not set(self.quantizer) & set("./ "),
                "a quantizer name without '.', '/' or spaces (the benchmark checks that it is registered)")
        for name in ("levels", "niter", "vq_k"):
            require(self, name, getattr(self, name) >= 1, "an integer >= 1")
        require(self, "codebook_size", self.codebook_size >= 2, "an integer >= 2")
        require(self, "last_level", self.last_level in ("kmeans", "fsq"), "'kmeans' or 'fsq'")
        require(self, "fsq_levels", len(self.fsq_levels) >= 1 and all(v >= 2 for v in self.fsq_levels),
                "a non-empty list of bins per dim, each >= 2")
        require(self, "fsq_levels", math.prod(self.fsq_levels) < 2**62, "a product of bins below 2**62")
        require(self, "balanced_iters", self.balanced_iters >= 0, "an integer >= 0")

    @property
    def level_vocab(self) -> tuple[int, ...]:
        """Vocabulary of each RQ-Kmeans level before any dedup suffix (K per k-means level, prod(fsq_levels)
        for an FSQ last level); K as configured, before the pipeline caps it at N."""
        last = math.prod(self.fsq_levels) if self.last_level == "fsq" else self.codebook_size
        return (self.codebook_size,) * (self.levels - 1) + (last,)
