"""Save / load of quantizers: `<dir>/<kind>.safetensors` (arrays) + `<dir>/<kind>.json` (settings). No pickle."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from qarm.errors import QarmError

FORMAT_VERSION = 1


def save_artifact(path: str | os.PathLike[str], kind: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write `arrays` (safetensors) and `meta` (JSON, with `kind` and `format_version`) into directory `path`."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(out / f"{kind}.safetensors"))
    doc = {"kind": kind, "format_version": FORMAT_VERSION, **meta}
    (out / f"{kind}.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def read_kind(path: str | os.PathLike[str]) -> str:
    """The kind of the quantizer saved in directory `path` (the stem of its single `*.json`)."""
    d = Path(path)
    kinds = sorted(p.stem for p in d.glob("*.json") if (d / f"{p.stem}.safetensors").is_file())
    if len(kinds) != 1:
        raise QarmError(f"{d}: expected exactly one saved quantizer (<kind>.json + <kind>.safetensors), found {kinds}")
    return kinds[0]


def load_artifact(path: str | os.PathLike[str], kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read what `save_artifact(path, kind, ...)` wrote; names the missing file or wrong version."""
    d = Path(path)
    meta_file, tensor_file = d / f"{kind}.json", d / f"{kind}.safetensors"
    for f in (meta_file, tensor_file):
        if not f.is_file():
            raise QarmError(f"{f}: missing; expected a {kind} quantizer saved by .save()")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise QarmError(f"{meta_file}: not valid JSON ({e})") from e
    if meta.get("kind") != kind or meta.get("format_version") != FORMAT_VERSION:
        raise QarmError(f"{meta_file}: expected kind={kind!r} format_version={FORMAT_VERSION}, "
                        f"got kind={meta.get('kind')!r} format_version={meta.get('format_version')!r}")
    return load_file(str(tensor_file)), meta
