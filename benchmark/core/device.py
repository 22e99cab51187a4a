"""`suite.device` -> a torch.device, decided once at run start (torch is imported only here, lazily).

    "auto"     CUDA when torch sees a GPU, else CPU
    "cpu"      CPU
    "cuda"     the current CUDA device (under torchrun: cuda:LOCAL_RANK, one GPU per rank)
    "cuda:N"   GPU N (a single process only: under torchrun each rank takes its local rank's GPU)

Configs are loaded without torch, so the spelling is checked at load (`check_device_name`) and the machine at
run start (`resolve_device`): asking for CUDA where torch has none is a ConfigError naming `suite.device`.

The stack is checked there too (`check_cuda_stack`): CUDA with TorchRec's CPU-only fbgemm kernels
(fbgemm-gpu-cpu) or a faiss without GPU support (faiss-cpu) stops the run at its start with one line naming
`suite.device` and the GPU install command, instead of failing in the first sharded cell. On a GPU machine where
`scripts/setup.sh` installed the CPU stack (no QARM_GPU) it leaves a note in the environment (CPU_STACK_NOTE):
then "auto" means the CPU, and says so.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.core.errors import ConfigError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
GPU_INSTALL = "QARM_GPU=1 bash scripts/setup.sh"
CPU_STACK_NOTE = "qarm-cpu-stack"  # written into the environment (sys.prefix) by scripts/setup.sh (same name there)


@dataclass(frozen=True)
class GpuStack:
    """What the installed packages can do on CUDA. fbgemm: "cuda" (TorchRec's ops have CUDA kernels), "cpu"
    (fbgemm-gpu-cpu, or the op refuses a CUDA tensor) or "missing"; faiss_gpus: faiss.get_num_gpus() (0 on
    faiss-cpu; None when faiss is missing); cpu_note: the note setup.sh left when it pinned this environment to
    the CPU stack on a GPU machine ("" when none)."""

    fbgemm: str
    faiss_gpus: int | None
    cpu_note: str = ""


def stack_problems(stack: GpuStack) -> list[str]:
    """What keeps the installed stack from running a suite on CUDA, in words ([] when nothing)."""
    out = []
    if stack.fbgemm != "cuda":
        out.append("fbgemm_gpu is not installed" if stack.fbgemm == "missing" else
                   "TorchRec's fbgemm ops have no CUDA kernels (fbgemm-gpu-cpu is installed)")
    if not stack.faiss_gpus:
        out.append("faiss is not installed" if stack.faiss_gpus is None else "faiss sees no GPU (faiss-cpu)")
    return out


def check_cuda_stack(name: str, stack: GpuStack) -> str:
    """"cuda" when the stack runs on CUDA; "cpu" when `name` is "auto" and setup.sh pinned this environment to the
    CPU stack (said on stderr); else a ConfigError naming suite.device and the GPU install command."""
    problems = stack_problems(stack)
    if not problems:
        return "cuda"
    why = "; ".join(problems)
    if name == "auto" and stack.cpu_note:
        print(f"qarm-bench: suite.device 'auto' -> cpu: this environment has the CPU stack on a GPU machine ({why}; "
              f"{stack.cpu_note}); for the GPU: {GPU_INSTALL}", file=sys.stderr)
        return "cpu"
    note = f"; setup.sh installed the CPU stack here ({stack.cpu_note})" if stack.cpu_note else ""
    raise ConfigError(f"suite.device: {name!r} runs on CUDA but {why}{note}; install the GPU stack with "
                      f"`{GPU_INSTALL}`, or set suite.device = 'cpu'")


def _fbgemm_on_cuda(index: int) -> str:
    """"cuda", "cpu" or "missing" (GpuStack.fbgemm): the package's name, then a tiny op on a tensor on GPU
    `index`."""
    import importlib.metadata as md

    import torch

    try:
        import fbgemm_gpu  # noqa: F401 - loads torch.ops.fbgemm
    except ImportError:
        return "missing"
    try:
        md.version("fbgemm-gpu-cpu")
        return "cpu"
    except md.PackageNotFoundError:
        pass
    try:
        torch.ops.fbgemm.asynchronous_complete_cumsum(torch.ones(2, dtype=torch.int32, device=f"cuda:{index}"))
    except (NotImplementedError, RuntimeError, AttributeError):
        return "cpu"
    return "cuda"


def probe_gpu_stack(index: int = 0) -> GpuStack:
    """The installed stack's GpuStack, tried on GPU `index` (imports fbgemm_gpu and faiss; call only where torch
    sees a GPU)."""
    try:
        import faiss

        gpus: int | None = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    except ImportError:
        gpus = None
    note = Path(sys.prefix) / CPU_STACK_NOTE
    return GpuStack(_fbgemm_on_cuda(index), gpus, f"see {note}" if note.exists() else "")


def check_device_name(name: str) -> bool:
    """Whether `name` is one of "auto", "cpu", "cuda", "cuda:N" (spelling only; no torch)."""
    return bool(DEVICE_PATTERN.match(name))


def _local_rank() -> int | None:
    """LOCAL_RANK of a torchrun worker in a world of more than one process, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    return None


def resolve_device(name: str, probe: Callable[[int], GpuStack] = probe_gpu_stack) -> Any:
    """The torch.device `suite.device = name` means on this machine (and, under torchrun, this rank); a CUDA
    device only when the stack `probe(gpu index)` reports can run there (check_cuda_stack)."""
    import torch

    if not check_device_name(name):
        raise ConfigError(f"suite.device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    local = _local_rank()
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        why = "this torch has no CUDA support" if torch.version.cuda is None else "torch sees no GPU"
        raise ConfigError(f"suite.device: {name!r} asked for CUDA but {why} (torch {torch.__version__}); use "
                          "'auto' or 'cpu', or install a CUDA build of torch (README, GPU)")
    count = torch.cuda.device_count()
    if name.startswith("cuda:"):
        index = int(name.split(":")[1])
        if local is not None:
            raise ConfigError(f"suite.device: {name!r} names one GPU, but under --nproc-per-node each rank takes the "
                              "GPU of its local rank; use 'cuda' or 'auto'")
    else:
        index = local if local is not None else torch.cuda.current_device()
    if index >= count:
        raise ConfigError(f"suite.device: GPU {index} asked for, but torch sees {count} GPU(s)"
                          + (" (one per local rank is needed)" if local is not None else ""))
    if check_cuda_stack(name, probe(index)) == "cpu":
        return torch.device("cpu")
    return torch.device("cuda", index)
