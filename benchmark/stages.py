"""Content-addressed stage cache: `runs/<suite>/artifacts/<stage>/<hash>/`, written atomically.

A stage's hash covers its config slice, its upstream stages' hashes and the package version, so a
rerun with the same inputs finds the finished directory (marked by `_SUCCESS`) and skips the work,
and ablations that change only a late stage reuse the early ones. Writes go to a temporary sibling
directory that is renamed into place only after the stage's function returned: a run killed at any
moment leaves either no entry or a complete one, never a partial one.

    data ─► pairs ─► frozen ─► align ─► codes ─► rank (cells) ─► report
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

STAGES: tuple[str, ...] = ("data", "pairs", "frozen", "align", "codes", "rank", "report")
# Which stages each stage reads (the DAG); --force X reruns X and every stage downstream of it.
UPSTREAM: dict[str, tuple[str, ...]] = {
    "data": (),
    "pairs": ("data",),
    "frozen": ("data",),
    "align": ("data", "pairs", "frozen"),
    "codes": ("frozen", "align"),
    "rank": ("data", "frozen", "align", "codes"),
    "report": ("rank",),
}
SUCCESS = "_SUCCESS"


def downstream_closure(forced: Iterable[str]) -> set[str]:
    """The forced stages and every stage that (transitively) reads one of them."""
    out = set(forced)
    changed = True
    while changed:
        changed = False
        for stage, ups in UPSTREAM.items():
            if stage not in out and out.intersection(ups):
                out.add(stage)
                changed = True
    return out


class StageCache:
    """Finished stage outputs under `root/<stage>/<hash>/`, each with a `_SUCCESS` marker."""

    def __init__(self, root: Path, force: Iterable[str] = ()) -> None:
        self.root = Path(root)
        self.forced = downstream_closure(force)
        self._recomputed: set[tuple[str, str]] = set()

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def done(self, stage: str, key: str) -> bool:
        """True when a finished entry exists and is not being forced (each forced entry recomputes once)."""
        if stage in self.forced and (stage, key) not in self._recomputed:
            return False
        return (self.path(stage, key) / SUCCESS).exists()

    def is_cached(self, stage: str, key: str) -> bool:
        """Whether a finished entry exists on disk, ignoring --force (for `qarm-bench plan`)."""
        return (self.path(stage, key) / SUCCESS).exists()

    @contextlib.contextmanager
    def writing(self, stage: str, key: str, meta: dict[str, Any] | None = None) -> Iterator[Path]:
        """Yield an empty temporary directory; on success it atomically becomes `<stage>/<key>/`."""
        final = self.path(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            yield tmp
            (tmp / "_meta.json").write_text(json.dumps({"stage": stage, "key": key, **(meta or {})},
                                                       indent=2, sort_keys=True, default=str))
            (tmp / SUCCESS).write_text("")
            _fsync_dir(tmp)
            if final.exists():  # a forced rerun replaces the old entry; swap via a trash name
                trash = final.parent / f".old-{key}-{uuid.uuid4().hex[:8]}"
                os.replace(final, trash)
                os.replace(tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, final)
            self._recomputed.add((stage, key))
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def clean_partial(self) -> int:
        """Remove temporary directories left by a killed run; returns how many were removed."""
        n = 0
        if not self.root.exists():
            return 0
        for stage_dir in self.root.iterdir():
            if not stage_dir.is_dir():
                continue
            for d in stage_dir.iterdir():
                if d.name.startswith((".tmp-", ".old-")):
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


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
