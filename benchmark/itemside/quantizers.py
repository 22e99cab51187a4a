"""The quantizers a code set can be fitted with, found by key in benchmark.core.registry.QUANTIZERS.

A quantizer is a QuantizerSpec: its kind ("rq": codes (N, L) int64, level l in [0, vocab_sizes[l]); "vq": a
top-k bag of item_idx), the settings its cache key covers (`key_slice(q)`), and `fit(x, q, ctx)`. The built-ins
(RQ-Kmeans, RQ-VAE, the VQ top-k bag) are declared as entry points of the group qarm_bench.quantizers in
pyproject.toml, the door a plugin package uses too (docs/extending.md).

    fit(x: (N, d) float32, q: QuantizeConfig, ctx: FitContext) -> Fitted
        Fitted.codes (N, L) int64; vocab_sizes (L,); decode: codes -> (N, d) reconstructions, or None

x holds ALL items; a residual quantizer fits its codebooks on `ctx.fit_rows(x)` (the warm items under
quantize.fit_on = "warm", the default: a deployment never sees a cold item's embedding before its codebooks
exist) and encodes every row of x, cold items included, against them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from benchmark.core.registry import QUANTIZERS


@dataclass(frozen=True)
class FitContext:
    """seed: the replicate seed; device: the run's torch.device; faiss_gpu: faiss's GPU choice (False on a CPU
    run, "auto" otherwise); warm: (N,) bool, the items with a training impression; fit_on: the rows a residual
    quantizer fits its codebooks on, "warm" or "all" (quantize.fit_on, decided by the codes stage)."""

    seed: int
    device: Any
    faiss_gpu: bool | str
    warm: np.ndarray
    fit_on: str = "all"

    def fit_rows(self, x: np.ndarray) -> np.ndarray:
        """The rows of x (N, d) a codebook is fitted on: x[warm] under fit_on = "warm", else x."""
        return x[self.warm] if self.fit_on == "warm" else x


@dataclass(frozen=True, eq=False)
class Fitted:
    """A quantizer's output: codes (N, L) int64, vocab_sizes per level, decode (None when it has no decoder),
    and extra diagnostics (a VQ bag's k and distinct neighbours)."""

    codes: np.ndarray
    vocab_sizes: tuple[int, ...]
    decode: Callable[[np.ndarray], np.ndarray] | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True)
class QuantizerSpec:
    name: str
    kind: Literal["rq", "vq"]
    fit: Callable[[np.ndarray, Any, FitContext], Fitted]
    key_slice: Callable[[Any], dict[str, Any]]
    description: str = ""


def get_quantizer(name: str, setting: str = "quantize.quantizer") -> QuantizerSpec:
    return QUANTIZERS.get_as(name, QuantizerSpec, setting)


# ---- the built-ins ----------------------------------------------------------------------------------


def _fit_rq_kmeans(x: np.ndarray, q: Any, ctx: FitContext) -> Fitted:
    from qarm.quantize import RQKmeans

    fit = ctx.fit_rows(x)
    k = min(q.codebook_size, fit.shape[0])
    model = RQKmeans(levels=q.levels, codebook_size=k, niter=q.niter, seed=ctx.seed, last_level=q.last_level,
                     fsq_levels=q.fsq_levels, balanced=q.balanced, balanced_iters=q.balanced_iters,
                     gpu=ctx.faiss_gpu).fit(fit)
    return Fitted(model.encode(x).astype(np.int64), tuple(model.vocab_sizes), model.decode)


def _slice_rq_kmeans(q: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"quantizer": "rq_kmeans", "levels": q.levels, "codebook_size": q.codebook_size,
                           "dedup": q.dedup, "niter": q.niter, "fit_on": q.fit_on}
    if q.last_level == "fsq":  # the options enter the key only when set, so plain keys never change
        out |= {"last_level": "fsq", "fsq_levels": q.fsq_levels}
    if q.balanced:
        out |= {"balanced": True, "balanced_iters": q.balanced_iters}
    return out


def _fit_rq_vae(x: np.ndarray, q: Any, ctx: FitContext) -> Fitted:
    from qarm.quantize import fit_rq_vae

    fit = ctx.fit_rows(x)
    k = min(q.codebook_size, fit.shape[0])
    model = fit_rq_vae(fit, q.levels, k, q.rq_vae, seed=ctx.seed, device=ctx.device)
    return Fitted(model.encode(x).astype(np.int64), (k,) * q.levels, model.decode)


def _slice_rq_vae(q: Any) -> dict[str, Any]:
    return {"quantizer": "rq_vae", "levels": q.levels, "codebook_size": q.codebook_size, "dedup": q.dedup,
            "rq_vae": q.rq_vae, "fit_on": q.fit_on}


def _fit_vq(x: np.ndarray, q: Any, ctx: FitContext) -> Fitted:
    """Neighbours among the items with a training impression (their id rows are trained), never the item."""
    from qarm.quantize import vq_codes

    warm = np.flatnonzero(ctx.warm)
    c = vq_codes(x, k=min(q.vq_k, warm.size - 1), candidates=warm, gpu=ctx.faiss_gpu).astype(np.int64)
    return Fitted(c, (x.shape[0],), None, {"k": int(c.shape[1]), "distinct_neighbours": int(np.unique(c).size),
                                           "candidates": int(warm.size)})


RQ_KMEANS = QuantizerSpec("rq_kmeans", "rq", _fit_rq_kmeans, _slice_rq_kmeans,
                          "residual k-means (QARM's RQ code); options: FSQ last level, balanced k-means")
RQ_VAE = QuantizerSpec("rq_vae", "rq", _fit_rq_vae, _slice_rq_vae, "RQ-VAE (TIGER), the learned baseline")
VQ = QuantizerSpec("vq", "vq", _fit_vq, lambda q: {"quantizer": "vq", "vq_k": q.vq_k},
                   "the top-k nearest warm items in the embedding space (QARM's VQ code)")
