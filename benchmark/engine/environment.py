"""The hardware and math stack a run computed on (issue 20), recorded in Provenance.environment.

    math_stack(threads, workers, device) -> dict   CPU model, GPU model, torch's BLAS / oneDNN build, thread
                                                   counts, library versions

Why: the suite is bit for bit reproducible only on the same CPU model, math libraries and thread counts (a
different CPU takes other BLAS / oneDNN kernels, whose float sums round differently); on another machine the
figures agree within noise only (docs/results.md). The record says which case a comparison is in.
"""

from __future__ import annotations

import contextlib
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("torch", "torchrec", "fbgemm_gpu", "fbgemm_gpu_cpu", "faiss-cpu", "faiss-gpu", "numpy", "polars",
             "transformers", "scipy", "sentencepiece", "mlflow")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor(), else "unknown"."""
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    return platform.processor() or "unknown"


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries whose kernels or defaults shape the figures (absent ones omitted)."""
    out = {}
    for name in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def math_stack(threads: int, workers: int, device: Any = None) -> dict[str, Any]:
    """The environment record: cpu, cpu_count, gpu ("" without CUDA), device, torch_threads (intra-op threads
    the suite set), torch_interop_threads, cell workers, OMP_NUM_THREADS / MKL_NUM_THREADS as set, mkldnn
    (oneDNN available), mkl (MKL available), torch_config (torch.__config__.show(): the BLAS, LAPACK, oneDNN and compiler build),
    versions, python, platform."""
    import torch

    gpu = ""
    with contextlib.suppress(Exception):  # a broken CUDA install must not fail the run's last step
        if torch.cuda.is_available():
            gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "gpu": gpu,
        "device": str(device) if device is not None else "",
        "torch_threads": int(threads),
        "torch_interop_threads": int(torch.get_num_interop_threads()),
        "workers": int(workers),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        "mkl_num_threads": os.environ.get("MKL_NUM_THREADS", ""),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "mkl": bool(torch.backends.mkl.is_available()),
        "torch_config": torch.__config__.show().strip(),
        "versions": library_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
