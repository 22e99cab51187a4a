"""Quantizers of aligned item embeddings: RQ-Kmeans (QARM's RQ code), VQ top-k codes, RQ-VAE (TIGER baseline).

Glossary: N items, d embedding dim, L levels, K codebook size, k neighbours.

    x: (N, d) float32  ->  RQKmeans / RQVAE .encode  ->  codes: (N, L) int64 in [0, K)
                       ->  vq_codes                  ->  codes: (N, k) int64 item_idx
    codes: (N, L)      ->  add_dedup_level           ->  (N, L + 1) int64, every row unique

Everything saves as safetensors + JSON (never pickle); `load_quantizer(dir)` reads either kind back.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import numpy as np

from qarm.quantize.dedup import add_dedup_level, dedup_vocab_size
from qarm.quantize.io import read_kind
from qarm.quantize.rq_kmeans import RQKmeans, rq_decode, rq_encode
from qarm.quantize.rq_vae import RQVAE, RQVAEConfig, fit_rq_vae
from qarm.quantize.vq import vq_codes


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

    def save(self, path: str | os.PathLike[str]) -> None: ...


def load_quantizer(path: str | os.PathLike[str]) -> RQKmeans | RQVAE:
    """Load whichever quantizer `.save(path)` wrote (RQKmeans or RQVAE), by the kind in its JSON."""
    kind = read_kind(path)
    if kind == "rq_kmeans":
        return RQKmeans.load(path)
    if kind == "rq_vae":
        return RQVAE.load(path)
    from qarm.errors import QarmError

    raise QarmError(f"{path}: unknown quantizer kind {kind!r} (expected rq_kmeans or rq_vae)")


__all__ = [
    "RQVAE", "Quantizer", "RQKmeans", "RQVAEConfig", "add_dedup_level", "dedup_vocab_size", "fit_rq_vae",
    "load_quantizer", "rq_decode", "rq_encode", "vq_codes",
]
