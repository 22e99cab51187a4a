"""faiss on the GPU, checked on the CPU with stand-ins: a GPU flat index is never asked for more than
GPU_MAX_K neighbours (faiss's GPU k-selection limit; issue 24), larger searches go to a CPU copy with the same
exact answer, and the VQ candidate search (which widens k up to all N) keeps to the limit."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from qarm.quantize import faiss_utils
from qarm.quantize.reference import reference_topk
from qarm.quantize.vq import topk_neighbours


class FakeGpuIndex:
    """A CPU flat index that behaves like faiss's GPU one for k: more than GPU_MAX_K neighbours is an error."""

    def __init__(self, index: faiss.Index) -> None:
        self.index, self.asked = index, []

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def add(self, x: np.ndarray) -> None:
        self.index.add(x)

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.asked.append(k)
        if k > faiss_utils.GPU_MAX_K:
            raise RuntimeError(f"GPU index asked for k={k} > {faiss_utils.GPU_MAX_K}")
        return self.index.search(x, k)


@pytest.fixture()
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> list[FakeGpuIndex]:
    """faiss 'sees a GPU'; every GPU index made is a FakeGpuIndex (listed); GPU_MAX_K is 8 so small pools
    exercise the limit."""
    made: list[FakeGpuIndex] = []

    def to_gpu(index: faiss.Index) -> FakeGpuIndex:
        made.append(FakeGpuIndex(index))
        return made[-1]

    monkeypatch.setattr(faiss_utils, "GPU_MAX_K", 8)
    monkeypatch.setattr(faiss_utils, "num_gpus", lambda: 1)
    monkeypatch.setattr(faiss_utils, "to_own_gpu", to_gpu)
    monkeypatch.setattr(faiss_utils, "to_cpu", lambda fake: fake.index)
    return made


def test_search_above_the_limit_goes_to_a_cpu_copy(fake_gpu: list[FakeGpuIndex]) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    index = faiss_utils.flat_index(4, "l2", use_gpu=True)
    index.add(x)
    small, large = index.search(x[:5], 8), index.search(x[:5], 20)
    assert fake_gpu[0].asked == [8]  # k = 20 never reached the GPU index
    want = reference_topk(x, 20, exclude_self=False, metric="l2")[:5]
    np.testing.assert_array_equal(large[1], want)
    np.testing.assert_array_equal(small[1], want[:, :8])


def test_cpu_index_has_no_limit(fake_gpu: list[FakeGpuIndex]) -> None:
    x = np.random.default_rng(1).normal(size=(30, 3)).astype(np.float32)
    index = faiss_utils.flat_index(3, "ip", use_gpu=False)
    index.add(x)
    assert index.search(x, 30)[1].shape == (30, 30) and not fake_gpu


def test_vq_search_widening_past_the_limit_stays_exact(fake_gpu: list[FakeGpuIndex]) -> None:
    """60 tied items and k = 5: the candidates widen 13 -> 52 -> all 100, past GPU_MAX_K = 8; the GPU index only
    ever sees k <= 8 and the result is the reference's."""
    rng = np.random.default_rng(2)
    x = np.concatenate([np.ones((60, 4)), rng.normal(size=(40, 4))]).astype(np.float32)
    got = topk_neighbours(x, 5, gpu=True)
    np.testing.assert_array_equal(got, reference_topk(x, 5))
    assert fake_gpu and all(k <= 8 for f in fake_gpu for k in f.asked)


def test_gpu_device_is_the_current_cuda_device_or_0() -> None:
    import torch

    want = torch.cuda.current_device() if torch.cuda.is_available() else 0
    assert faiss_utils.gpu_device() == want


def test_gpu_kmeans_uses_this_process_gpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """k-means on the GPU clusters through the index `to_own_gpu` made (this process's GPU), not faiss's
    all-GPUs Kmeans(gpu=True); a CPU index stands in for the GPU one and gives the CPU run's centroids."""
    made: list[faiss.Index] = []
    monkeypatch.setattr(faiss_utils, "to_own_gpu", lambda index: made.append(index) or index)
    x = np.random.default_rng(3).normal(size=(200, 4)).astype(np.float32)
    kw = {"niter": 5, "seed": 0, "max_points_per_centroid": None}
    gpu, cpu = faiss_utils.faiss_kmeans(x, 4, use_gpu=True, **kw), faiss_utils.faiss_kmeans(x, 4, use_gpu=False, **kw)
    assert len(made) == 1 and made[0].ntotal == 4  # the clustering's centroids were searched through it
    np.testing.assert_array_equal(gpu.centroids, cpu.centroids)
