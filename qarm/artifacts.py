"""Saving and loading item-side artifacts without pickle: safetensors for weights, npy for arrays, json for
settings; and `atomic_directory`, the one atomic-directory writer of the project (the benchmark's stage
cache and the data cache write through it too).

A directory is written as a temporary sibling, fsynced and renamed into place, so a crash never leaves a
half-written artifact behind (docs/architecture.md, "One run, end to end").
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from qarm.errors import QarmError

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"


@contextlib.contextmanager
def atomic_directory(final: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temporary sibling of `final`; when the block ends without an exception it becomes
    `final` by one rename (an existing `final` is swapped out through a trash name when `replace`, else the
    new copy is dropped: another writer finished first). On any exception the temporary folder is removed
    and `final` is untouched."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    ok = False
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists():
            if not replace:
                return
            trash = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(final.parent)
        ok = True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if not ok:  # leave no trace: the parent folder too, when the failed write was all it held
            with contextlib.suppress(OSError):
                final.parent.rmdir()


def remove_partial(parent: str | Path) -> int:
    """Remove the temporary and trash folders `atomic_directory` leaves in `parent` when killed; returns how many."""
    parent = Path(parent)
    if not parent.is_dir():
        return 0
    n = 0
    for d in parent.iterdir():
        if d.is_dir() and d.name.startswith((".tmp-", ".old-")):
            shutil.rmtree(d, ignore_errors=True)
            n += 1
    return n


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder under root, so the rename publishes complete data."""
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with contextlib.suppress(OSError), path.open("rb") as f:
                os.fsync(f.fileno())
        elif path.is_dir():
            _fsync_dir(path)
    _fsync_dir(root)


def save_artifact(
    out_dir: str | Path,
    *,
    tensors: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    arrays: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write `weights.safetensors` (torch tensors), `config.json` and `<name>.npy` files into `out_dir`
    atomically; an existing `out_dir` is replaced. Returns the directory path."""
    out = Path(out_dir)
    with atomic_directory(out) as tmp:
        if tensors:
            from safetensors.torch import save_file

            # safetensors refuses shared or non-contiguous storage: store independent copies.
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp / WEIGHTS))
        if config is not None:
            (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
        for name, arr in (arrays or {}).items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
    return out


def load_artifact(
    in_dir: str | Path, *, arrays: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Read what `save_artifact` wrote: (tensors, config, arrays). Missing files raise QarmError."""
    d = Path(in_dir)
    if not d.is_dir():
        raise QarmError(f"artifact directory {d} does not exist")
    tensors: dict[str, Any] = {}
    if (d / WEIGHTS).exists():
        from safetensors.torch import load_file

        tensors = load_file(str(d / WEIGHTS))
    config = json.loads((d / CONFIG).read_text()) if (d / CONFIG).exists() else {}
    out: dict[str, np.ndarray] = {}
    for name in arrays:
        p = d / f"{name}.npy"
        if not p.exists():
            raise QarmError(f"artifact {d}: expected array file {p.name}")
        out[name] = np.load(p, allow_pickle=False)
    return tensors, config, out
