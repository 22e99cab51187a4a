"""Saving and loading item-side artifacts without pickle: safetensors for weights, npy for arrays,
json for settings. Directories are written atomically (temp dir + rename) so a crash never leaves a
half-written artifact behind (DESIGN.md, "Data flow").
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from qarm.errors import QarmError

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"


def save_artifact(
    out_dir: str | Path,
    *,
    tensors: dict[str, torch.Tensor] | None = None,
    config: dict[str, Any] | None = None,
    arrays: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write `weights.safetensors`, `config.json` and `<name>.npy` files into `out_dir` atomically.

    An existing `out_dir` is replaced. Returns the directory path.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if tensors:
            # safetensors refuses shared or non-contiguous storage: store independent copies.
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp / WEIGHTS))
        if config is not None:
            (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name, arr in (arrays or {}).items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_artifact(
    in_dir: str | Path, *, arrays: tuple[str, ...] = ()
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, np.ndarray]]:
    """Read what `save_artifact` wrote: (tensors, config, arrays). Missing files raise QarmError."""
    d = Path(in_dir)
    if not d.is_dir():
        raise QarmError(f"artifact directory {d} does not exist")
    tensors = load_file(str(d / WEIGHTS)) if (d / WEIGHTS).exists() else {}
    config = json.loads((d / CONFIG).read_text()) if (d / CONFIG).exists() else {}
    out: dict[str, np.ndarray] = {}
    for name in arrays:
        p = d / f"{name}.npy"
        if not p.exists():
            raise QarmError(f"artifact {d}: expected array file {p.name}")
        out[name] = np.load(p, allow_pickle=False)
    return tensors, config, out
