"""`suite.device` -> a torch.device, decided once at run start (torch is imported only here, lazily).

    "auto"     CUDA when torch sees a GPU, else CPU
    "cpu"      CPU
    "cuda"     the current CUDA device (under torchrun: cuda:LOCAL_RANK, one GPU per rank)
    "cuda:N"   GPU N (a single process only: under torchrun each rank takes its local rank's GPU)

Configs are loaded without torch, so the spelling is checked at load (`check_device_name`) and the machine at
run start (`resolve_device`): asking for CUDA where torch has none is a ConfigError naming `suite.device`.
"""

from __future__ import annotations

import os
import re
from typing import Any

from benchmark.core.errors import ConfigError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(name: str) -> bool:
    """Whether `name` is one of "auto", "cpu", "cuda", "cuda:N" (spelling only; no torch)."""
    return bool(DEVICE_PATTERN.match(name))


def _local_rank() -> int | None:
    """LOCAL_RANK of a torchrun worker in a world of more than one process, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    return None


def resolve_device(name: str) -> Any:
    """The torch.device `suite.device = name` means on this machine (and, under torchrun, this rank)."""
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
    return torch.device("cuda", index)
