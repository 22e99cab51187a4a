"""faiss helpers: GPU detection, seeded k-means and flat indexes that move to the GPU when faiss sees one.

faiss-cpu and faiss-gpu install the same module `faiss`; `faiss.get_num_gpus()` is 0 on faiss-cpu and on
faiss-gpu without a device (reference/deps.md §4), so `gpu="auto"` is safe everywhere. faiss is imported on
first use, so the numpy helpers (and the RQ-VAE, which needs faiss only for its k-means initialisation) load
on a machine without it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from qarm.errors import QarmError

if TYPE_CHECKING:
    import faiss

GpuChoice = bool | Literal["auto"]


def _faiss() -> Any:
    """The faiss module, or a QarmError naming the package to install."""
    try:
        import faiss
    except ImportError as e:
        raise QarmError("faiss is not installed: pip install faiss-cpu==1.15.1 (or faiss-gpu on a CUDA machine; "
                        "README, GPU)") from e
    return faiss


def num_gpus() -> int:
    """Number of GPUs faiss can use (0 on faiss-cpu)."""
    faiss = _faiss()
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def resolve_gpu(gpu: GpuChoice, *, arg: str = "gpu") -> bool:
    """"auto" -> whether faiss sees a GPU; True without one is a user error, not a silent CPU fallback."""
    if gpu == "auto":
        return num_gpus() > 0
    if gpu is True:
        if num_gpus() == 0:
            raise QarmError(f"{arg}=True but faiss sees no GPU (faiss-cpu, or no device); use {arg}='auto'")
        return True
    if gpu is False:
        return False
    raise QarmError(f"{arg} must be True, False or 'auto', got {gpu!r}")


@dataclass(frozen=True)
class KmeansResult:
    """Centroids `(K, d) float32` of one faiss k-means call and its cost."""

    centroids: np.ndarray
    seconds: float
    objective: float
    imbalance_factor: float


def faiss_kmeans(
    x: np.ndarray, k: int, *, niter: int, seed: int, max_points_per_centroid: int | None, use_gpu: bool
) -> KmeansResult:
    """One seeded faiss k-means on `x: (N, d) float32` (C-contiguous), N >= k checked by the caller.

    max_points_per_centroid=None trains on all N points (faiss otherwise samples k * 256 of them);
    min_points_per_centroid=1 silences faiss's "please provide at least 39*k points" warning, since
    small item pools are a normal case here.
    """
    n = x.shape[0]
    mppc = -(-n // k) if max_points_per_centroid is None else max_points_per_centroid
    km = _faiss().Kmeans(
        x.shape[1], k, niter=niter, seed=seed, gpu=use_gpu, verbose=False,
        max_points_per_centroid=mppc, min_points_per_centroid=1,
    )
    t0 = time.perf_counter()
    km.train(x)
    seconds = time.perf_counter() - t0
    stats = km.iteration_stats[-1] if km.iteration_stats else {"obj": 0.0, "imbalance_factor": 1.0}
    return KmeansResult(np.ascontiguousarray(km.centroids, dtype=np.float32), seconds,
                        float(stats["obj"]), float(stats["imbalance_factor"]))


def flat_index(d: int, metric: Literal["l2", "ip"], *, use_gpu: bool) -> faiss.Index:
    """An exact (flat) faiss index, on all GPUs when asked."""
    faiss = _faiss()
    index: faiss.Index = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    return index


def as_float32_matrix(x: object, *, arg: str = "x") -> np.ndarray:
    """Validate `x: (N, d)` finite numbers and return it as C-contiguous float32 (what faiss needs)."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise QarmError(f"{arg} must be a 2-d (N, d) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise QarmError(f"{arg} must have at least one row and one column, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise QarmError(f"{arg} must hold real numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise QarmError(f"{arg} has a non-finite value (NaN/inf) in row {bad}")
    return arr
