"""`PreparedData`: the split, indexed, history-augmented dataset, and its parquet cache entry.

    train / val / test   one row per impression, sorted by (user_idx, ts, item_idx):
        user_idx Int32, item_idx Int32, ts Int64, label Int8,
        hist_item_idx List(Int32)   T = history_len latest positives strictly before ts, oldest first
        [rating Float32]
    items   one row per item_idx 0..N-1 (cold items too): item_idx Int32, item_id Utf8, text Utf8
            ("" when missing), image_path Utf8?, category Utf8?, year Utf8 (four digits, "" when
            unknown or the dataset has none), genres List(Utf8) (sorted, unique; [] when unknown or
            the dataset has none: only the MovieLens loaders fill year and genres), is_cold Boolean,
            train_count Int32, pop_bucket Int8 (0 = long tail .. B-1 = head; items without train rows get 0)
    users   one row per user_idx: user_idx Int32, user_id Utf8 [, feature columns Utf8]

Cache entry: <cache_dir>/<name>-<fingerprint[:16]>/{train,val,test,items,users}.parquet, meta.json,
_SUCCESS; written in a temp folder and renamed, so a reader never sees a partial entry.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

FRAMES = ("train", "val", "test", "items", "users")


@dataclass(frozen=True)
class PreparedData:
    train: pl.DataFrame
    val: pl.DataFrame
    test: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    stats: dict
    fingerprint: str
    name: str

    def train_positives(self) -> pl.DataFrame:
        """(user_idx, item_idx, ts) of the train rows with label 1, in (user_idx, ts, item_idx) order."""
        return self.train.filter(pl.col("label") == 1).select("user_idx", "item_idx", "ts")

    @property
    def n_items(self) -> int:
        return self.items.height

    @property
    def n_users(self) -> int:
        return self.users.height


def entry_dir(cache_dir: Path, name: str, fingerprint: str) -> Path:
    return cache_dir / f"{name}-{fingerprint[:16]}"


def read_entry(path: Path) -> PreparedData | None:
    """The cached PreparedData, or None when the entry is absent or incomplete."""
    if not (path / "_SUCCESS").exists():
        return None
    meta = json.loads((path / "meta.json").read_text())
    frames = {f: pl.read_parquet(path / f"{f}.parquet") for f in FRAMES}
    return PreparedData(**frames, stats=meta["stats"], fingerprint=meta["fingerprint"], name=meta["name"])


def write_entry(path: Path, build: Callable[[Path], PreparedData], *, replace: bool = False) -> PreparedData:
    """Run `build(tmp)` (it may write side files such as images into tmp), then write the frames
    into tmp and rename tmp to `path` (replace: move an existing entry aside first). On any error
    the temp folder is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        data = build(tmp)
        for f in FRAMES:
            getattr(data, f).write_parquet(tmp / f"{f}.parquet")
        meta = {"name": data.name, "fingerprint": data.fingerprint, "stats": data.stats}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        (tmp / "_SUCCESS").write_text("")
        if path.exists() and (replace or not (path / "_SUCCESS").exists()):
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.rename(path, old)  # readers see either the old entry or none, then the new one
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, path)
        except OSError:  # another process finished the same entry first: theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
        return data
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
