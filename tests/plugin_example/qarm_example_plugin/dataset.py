"""A dataset plugin: a generated click log with planted item clusters and item titles, no files.

A real loader reads its files in `load` (and lists them in `files`, so the data key changes with their content);
the suite validates, splits and prepares what `load` returns like any dataset's (benchmark.data.schema).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from benchmark.data.registry import Dataset
from benchmark.data.schema import RawData

COLOURS = ("red", "green", "blue", "black")


def load(cfg, root: Path) -> RawData:
    rng = np.random.default_rng(7)
    n_users, n_items, per_user = 120, 90, 25
    cluster = np.arange(n_items) % len(COLOURS)
    taste = rng.integers(0, len(COLOURS), n_users)
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.integers(0, n_items, users.size)
    liked = (cluster[items] == taste[users]) ^ (rng.random(users.size) < 0.15)
    inter = pl.DataFrame({"user_id": users.astype(str), "item_id": items.astype(str),
                          "ts": np.tile(np.arange(per_user), n_users).astype(np.int64), "label": liked.astype(np.int8)})
    titles = [f"a {COLOURS[c]} item number {i}" for i, c in enumerate(cluster)]
    item_frame = pl.DataFrame({"item_id": np.arange(n_items).astype(str), "text": titles,
                               "category": [COLOURS[c] for c in cluster]})
    return RawData(inter.unique(["user_id", "item_id"], keep="first", maintain_order=True), item_frame, None,
                   "toy-clusters (generated)")


TOY_CLUSTERS = Dataset("toy-clusters", card="", files=lambda cfg, root: [], load=load)
