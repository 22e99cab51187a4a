"""Quantizers of aligned item embeddings: RQ-Kmeans (QARM's RQ code), VQ top-k codes, RQ-VAE (TIGER baseline),
and the ways a ranker tokenises codes.

Glossary: N items, d embedding dim, L levels, K codebook size, k neighbours.

    x: (N, d) float32  ->  RQKmeans / RQVAE .encode  ->  codes: (N, L) int64 in [0, K)
                           RQKmeans(last_level="fsq")  last level in [0, prod(fsq_levels)) (QARM V2)
                           RQKmeans(balanced=True)     equal-size clusters per level (OneRec)
                       ->  vq_codes                  ->  codes: (N, k) int64 item_idx
    codes: (N, L)      ->  add_dedup_level           ->  (N, L + 1) int64, every row unique
    codes: (N, L)      ->  tokenize_codes            ->  TokenTables (unigram / prefix_ngram / bigram / spm)

Everything saves as safetensors + JSON (never pickle); `load_quantizer(dir)` reads either kind back.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from qarm.quantize.config import QuantizeConfig, QuantizerName, RQVAEConfig, TokenizeConfig

if TYPE_CHECKING:
    import numpy as np

_LAZY = {"add_dedup_level": "dedup", "dedup_vocab_size": "dedup", "RQKmeans": "rq_kmeans",
         "rq_decode": "rq_kmeans", "rq_encode": "rq_kmeans", "RQVAE": "rq_vae", "fit_rq_vae": "rq_vae",
         "vq_codes": "vq", "FSQ": "fsq", "balanced_assign": "balanced", "balanced_kmeans": "balanced",
         "TokenTable": "tokenize", "TokenTables": "tokenize", "TokenCoverage": "tokenize",
         "tokenize_codes": "tokenize", "token_coverage": "tokenize",
         "fallback_to_seen_prefix": "fallback", "seen_mask": "fallback", "code_coverage": "fallback",
         "CodeCoverage": "fallback"}


def __getattr__(name: str) -> Any:
    """faiss and torch load on first use of a quantizer, so the configs can be read without them."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"qarm.quantize.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'qarm.quantize' has no attribute {name!r}")


@runtime_checkable
class Quantizer(Protocol):
    """What the pipeline needs of a fitted code builder: L levels of K codes, encode / decode / save."""

    levels: int
    codebook_size: int

    def encode(self, x: np.ndarray) -> np.ndarray:
        """x: (N, d) float32 -> codes: (N, L) int64."""
        ...

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """codes: (N, l), l <= L -> (N, d) float32."""
        ...

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted quantizer into directory `path` (safetensors + JSON)."""
        ...


def load_quantizer(path: str | os.PathLike[str]) -> Any:
    """Load whichever quantizer `.save(path)` wrote (RQKmeans or RQVAE), by the kind in its JSON."""
    from qarm.quantize.io import read_kind

    kind = read_kind(path)
    if kind == "rq_kmeans":
        return __getattr__("RQKmeans").load(path)
    if kind == "rq_vae":
        return __getattr__("RQVAE").load(path)
    from qarm.errors import QarmError

    raise QarmError(f"{path}: unknown quantizer kind {kind!r} (expected rq_kmeans or rq_vae)")


__all__ = ["QuantizeConfig", "QuantizerName", "Quantizer", "RQVAEConfig", "TokenizeConfig", "load_quantizer", *_LAZY]
