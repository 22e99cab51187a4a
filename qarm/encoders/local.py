"""Loading Hugging Face models from local copies only: a model directory (written by `save_pretrained`, or a
hub snapshot folder) or the local hub cache. Nothing is ever downloaded; a hub id without a local copy fails
with a message naming it and saying what to pass instead."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from qarm.errors import QarmError

T = TypeVar("T")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-load chatter (weight-loading bars, load reports of unused keys) for a block."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_local(load: Callable[..., T], ref: str | Path, what: str, **kwargs: Any) -> T:
    """`load(ref, local_files_only=True, **kwargs)` (a `from_pretrained`), where ref is a local model directory
    or a hub id already in the local hub cache. Raises QarmError naming `what` (e.g. "image encoder") and ref
    when there is no local copy, or when the directory is not a loadable model."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub at run time
    path = Path(ref).expanduser()
    if path.exists() and not path.is_dir():
        raise QarmError(f"{what}: {str(ref)!r} is a file; expected a Hugging Face model directory "
                        "(config.json + weights, as written by save_pretrained)")
    try:
        with quiet_transformers():
            return load(str(path) if path.is_dir() else str(ref), local_files_only=True, **kwargs)
    except (OSError, ValueError) as e:
        if path.is_dir():
            raise QarmError(f"{what}: cannot load a transformers model from {str(ref)!r}: {e}") from e
        raise QarmError(
            f"{what}: cannot load a transformers model from {str(ref)!r}: no such directory, and no local copy of a "
            f"Hugging Face hub model {str(ref)!r} (weights are read from local paths or installed packages only, "
            "never downloaded); pass a local model directory, e.g. one written by save_pretrained"
        ) from e
