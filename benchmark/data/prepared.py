"""`PreparedData`: the split, indexed, history-augmented dataset, and its parquet cache entry.

    train / val / test   one row per impression, sorted by (user_idx, ts, item_idx):
        user_idx Int32, item_idx Int32, ts Int64, label Int8,
        hist_item_idx List(Int32)   T = history_len latest positives strictly before ts, oldest first
        [rating Float32]
        with data.negatives, sampled rows too: label 0, the positive's ts and hist_item_idx, rating null
    items   one row per item_idx 0..N-1 (cold items too): item_idx Int32, item_id Utf8, text Utf8
            ("" when missing), image_path Utf8?, category Utf8?, year Utf8 (four digits, "" when
            unknown or the dataset has none), genres List(Utf8) (sorted, unique; [] when unknown or
            the dataset has none: only the MovieLens loaders fill year and genres), is_cold Boolean (no
            training impression), cold_drawn Boolean (the seeded cold draw, held out of train/val),
            train_count Int32, pop_bucket Int8 (0 = long tail .. B-1 = head over the warm items;
            items without train rows get 0, which no slice reads: they are the `cold` slice)
    users   one row per user_idx: user_idx Int32, user_id Utf8 [, feature columns Utf8]

Cache entry (benchmark.core.cache.StageCache, stage "data"): <cache root>/data/<name>-<fingerprint[:16]>/
{train,val,test,items,users}.parquet, meta.json [, images/], sealed by a _SUCCESS content manifest; written
in a temp folder and renamed, so a reader never sees a partial entry.
"""

from __future__ import annotations

import json
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


def save_prepared(data: PreparedData, out: Path) -> None:
    """Write the frames as parquet and meta.json into `out` (a stage cache's temporary entry)."""
    for f in FRAMES:
        getattr(data, f).write_parquet(out / f"{f}.parquet")
    meta = {"name": data.name, "fingerprint": data.fingerprint, "stats": data.stats}
    (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


def load_prepared(path: Path) -> PreparedData:
    """Read what `save_prepared` wrote."""
    meta = json.loads((path / "meta.json").read_text())
    frames = {f: pl.read_parquet(path / f"{f}.parquet") for f in FRAMES}
    return PreparedData(**frames, stats=meta["stats"], fingerprint=meta["fingerprint"], name=meta["name"])
