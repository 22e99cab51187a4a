"""faiss helpers: GPU detection, seeded k-means and flat indexes that move to the GPU when faiss sees one.

A GPU index lives on this process's own GPU (torch's current CUDA device: under torchrun each rank has set its
local rank's), never on all GPUs of the machine, so ranks sharing a node never share a GPU. faiss's GPU flat
search answers at most GPU_MAX_K neighbours per query; `FlatIndex.search` asks a CPU copy for more.

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
GPU_MAX_K = 2048  # faiss GPU k-selection limit (faiss/gpu/utils/DeviceDefs.cuh: GPU_MAX_SELECTION_K)


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
    faiss = _faiss()
    km = faiss.Kmeans(
        x.shape[1], k, niter=niter, seed=seed, gpu=False, verbose=False,
        max_points_per_centroid=mppc, min_points_per_centroid=1,
    )
    if use_gpu:  # Kmeans(gpu=True) would spread over every GPU of the machine; this process's own only
        km.index = to_own_gpu(faiss.IndexFlatL2(x.shape[1]))
    t0 = time.perf_counter()
    km.train(x)
    seconds = time.perf_counter() - t0
    stats = km.iteration_stats[-1] if km.iteration_stats else {"obj": 0.0, "imbalance_factor": 1.0}
    return KmeansResult(np.ascontiguousarray(km.centroids, dtype=np.float32), seconds,
                        float(stats["obj"]), float(stats["imbalance_factor"]))


def gpu_device() -> int:
    """This process's GPU: torch's current CUDA device (a torchrun rank has set its local rank's), else 0."""
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.current_device()) if torch.cuda.is_available() else 0


def to_own_gpu(index: Any) -> Any:
    """A copy of the CPU `index` on this process's GPU (`gpu_device`); it keeps its GPU resources alive."""
    faiss = _faiss()
    res = faiss.StandardGpuResources()
    gpu = faiss.index_cpu_to_gpu(res, gpu_device(), index)
    gpu.referenced_objects = [res]  # faiss's convention: the resources live as long as the index
    return gpu


def to_cpu(index: Any) -> Any:
    """A CPU copy of a GPU faiss index."""
    return _faiss().index_gpu_to_cpu(index)


class FlatIndex:
    """An exact faiss index (`index`, on the GPU when `on_gpu`) whose `search` never asks the GPU for more than
    GPU_MAX_K neighbours: a larger k is answered by a CPU copy (`to_cpu`, made once), with the same result
    (both are exact). x: (n, d) float32 -> (distances (n, k) float32, ids (n, k) int64)."""

    def __init__(self, index: Any, *, on_gpu: bool) -> None:
        self.index, self.on_gpu = index, on_gpu
        self._cpu: Any = None

    @property
    def ntotal(self) -> int:
        """Vectors held."""
        return int(self.index.ntotal)

    def add(self, x: np.ndarray) -> None:
        """Add `x: (n, d) float32` (on the GPU when the index is there)."""
        self.index.add(x)
        self._cpu = None

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest of each row of `x` (the GPU for k <= GPU_MAX_K, else the CPU copy)."""
        if not self.on_gpu or k <= GPU_MAX_K:
            return self.index.search(x, k)
        if self._cpu is None:
            self._cpu = to_cpu(self.index)
        return self._cpu.search(x, k)


def flat_index(d: int, metric: Literal["l2", "ip"], *, use_gpu: bool) -> FlatIndex:
    """An exact (flat) faiss index, on this process's GPU when asked."""
    faiss = _faiss()
    index: faiss.Index = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    return FlatIndex(to_own_gpu(index) if use_gpu else index, on_gpu=use_gpu)


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
