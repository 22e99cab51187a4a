"""Content-addressed stage cache: `<root>/<stage>/<key>/`, written atomically, verified on read.

An entry is written through `qarm.artifacts.atomic_directory` (a temporary sibling renamed into place after
the stage's function returned), so a run killed at any moment leaves either no entry or a complete one. Its
`_SUCCESS` marker is a JSON object of the sha256 and size of every file in the entry; `done()` checks them,
so a truncated or altered artifact is reported, removed and recomputed instead of being trusted.

    runs/<suite>/artifacts/
      data/<dataset>-<fingerprint>/      train.parquet ... meta.json  _meta.json  _SUCCESS
      pairs/<key>/  frozen/<key>/  align/<key>/  codes/<key>/  rank/<key>/
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from benchmark.core.world import World
from qarm.artifacts import atomic_directory, remove_partial

SUCCESS = "_SUCCESS"
META = "_meta.json"
COMPUTE_SECONDS = "compute_seconds"  # in META: the seconds an entry's compute and save took (load_or_compute)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_manifest(entry: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {sha256, bytes}} of every file under `entry` but the marker itself."""
    out = {}
    for p in sorted(entry.rglob("*")):
        if p.is_file() and p.name != SUCCESS:
            out[p.relative_to(entry).as_posix()] = {"sha256": file_digest(p), "bytes": p.stat().st_size}
    return out


def verify_entry(entry: Path) -> str | None:
    """None when every file listed in `_SUCCESS` is present with its recorded size and sha256; otherwise
    the first problem found, in words."""
    try:
        listed = json.loads((entry / SUCCESS).read_text())
    except (OSError, json.JSONDecodeError) as e:
        return f"{entry / SUCCESS}: unreadable marker ({e})"
    if not isinstance(listed, dict) or not listed:
        return f"{entry / SUCCESS}: marker lists no files (written by an older version?)"
    for rel, want in sorted(listed.items()):
        p = entry / rel
        if not p.is_file():
            return f"{p}: missing"
        if p.stat().st_size != want.get("bytes"):
            return f"{p}: {p.stat().st_size} bytes, recorded {want.get('bytes')} (truncated or altered)"
        if file_digest(p) != want.get("sha256"):
            return f"{p}: content differs from the recorded sha256 (altered)"
    return None


class StageCache:
    """Finished stage outputs under `root/<stage>/<key>/`, each sealed by a `_SUCCESS` content manifest.

    force: stages to recompute once in this process (an entry written in this process is trusted again).
    on_invalid: called with a message when an entry fails verification (default: a line on stderr).
    """

    def __init__(self, root: Path, force: Iterable[str] = (), on_invalid: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.forced = set(force)
        self._written: set[tuple[str, str]] = set()
        self._verified: set[tuple[str, str]] = set()
        self._on_invalid = on_invalid or (lambda msg: print(msg, file=sys.stderr))

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def is_cached(self, stage: str, key: str) -> bool:
        """Whether a sealed entry exists on disk, ignoring --force and without verifying it (for `plan`)."""
        return (self.path(stage, key) / SUCCESS).exists()

    def done(self, stage: str, key: str) -> bool:
        """True when a verified entry exists and is not forced. A forced stage recomputes once per process; an
        entry that fails verification is reported and removed, so the caller recomputes it."""
        if (stage, key) in self._written:
            return True
        if stage in self.forced or not self.is_cached(stage, key):
            return False
        if (stage, key) in self._verified:
            return True
        problem = verify_entry(self.path(stage, key))
        if problem is not None:
            self._on_invalid(f"[cache] {stage}/{key}: {problem}; recomputing it")
            shutil.rmtree(self.path(stage, key), ignore_errors=True)
            return False
        self._verified.add((stage, key))
        return True

    @contextlib.contextmanager
    def writing(self, stage: str, key: str, meta: dict[str, Any] | None = None) -> Iterator[Path]:
        """Yield an empty temporary directory; on success it is sealed and atomically becomes `<stage>/<key>/`.
        `meta` goes into the entry's `_meta.json` when the block ends, so what the block adds to it is recorded
        too (load_or_compute adds the entry's compute seconds)."""
        with atomic_directory(self.path(stage, key), replace=True) as tmp:
            yield tmp
            (tmp / META).write_text(json.dumps({"stage": stage, "key": key, **(meta or {})}, indent=2,
                                               sort_keys=True, default=str))
            (tmp / SUCCESS).write_text(json.dumps(content_manifest(tmp), indent=1, sort_keys=True))
        self._written.add((stage, key))

    def load_or_compute(self, stage: str, key: str, compute: Callable[[Path], Any], save: Callable[[Any, Path], None],
                        load: Callable[[Path], Any], *, meta: dict[str, Any] | None = None, world: World | None = None,
                        collective: bool = False) -> tuple[Any, bool]:
        """The one "load from the cache or compute" path of the project: (artifact, cached).

        Cached (as rank 0 sees it, so every rank agrees): `load(entry)`. Otherwise `compute(workdir)` runs and
        `save(artifact, workdir)` fills the entry, sealed on success; the seconds the two took are recorded in its
        `_meta.json` as `compute_seconds` (what `qarm-bench plan` estimates the suite's other entries from). In a world of several ranks rank 0 computes
        and writes while the others wait at a barrier and load the entry; a `collective` stage (alignment under
        DDP) is computed by every rank together, the others in a scratch folder, rank 0 writing the entry.
        """
        world = world or World()
        final = self.path(stage, key)
        if world.agree(self.done(stage, key) if world.is_main else None):
            return load(final), True
        artifact = None
        if world.is_main:
            meta = dict(meta or {})
            with self.writing(stage, key, meta) as tmp:
                t0 = time.monotonic()
                artifact = compute(tmp)
                save(artifact, tmp)
                meta[COMPUTE_SECONDS] = round(time.monotonic() - t0, 3)
        elif collective:
            with tempfile.TemporaryDirectory(prefix=f"qarm-{stage}-rank{world.rank}-") as tmp:
                artifact = compute(Path(tmp))
        world.barrier()
        return (artifact if artifact is not None else load(final)), False

    def compute_seconds(self, stage: str) -> dict[str, list[float]]:
        """{instance ("" for a single-entry stage): [compute seconds]} over the sealed entries of `stage` whose
        `_meta.json` records them (entries written before it was recorded have none)."""
        out: dict[str, list[float]] = {}
        for meta in sorted((self.root / stage).glob(f"*/{META}")):
            if not (meta.parent / SUCCESS).exists():
                continue
            try:
                m = json.loads(meta.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            seconds = m.get(COMPUTE_SECONDS) if isinstance(m, dict) else None
            if isinstance(seconds, int | float) and seconds >= 0:
                out.setdefault(str(m.get("instance") or ""), []).append(float(seconds))
        return out

    def clean_partial(self) -> int:
        """Remove temporary folders left by a killed run; returns how many were removed."""
        if not self.root.exists():
            return 0
        return sum(remove_partial(d) for d in self.root.iterdir() if d.is_dir())


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    import os
    import uuid

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
