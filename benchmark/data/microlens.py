"""MicroLens (Ni et al. 2023): `<prefix>_pairs.csv` (user, item, timestamp), `<prefix>_titles.csv`
(item, title) and covers `<prefix>_covers/<item>.jpg`.

The pairs are clicks only, so every impression has label 1 (the release has no negatives; a
CTR-style evaluation needs sampled negatives, which this loader does not invent).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from benchmark.config.data import DataConfig
from benchmark.data import cards
from benchmark.data.schema import RawData, parse_int, read_csv_strings, require_columns, require_path

CARD = "microlens"
HINT = "see datasets/microlens/README.md"


def files(cfg: DataConfig, root: Path) -> list[Path]:
    p = cfg.microlens.prefix
    return [require_path(root / f"{p}_pairs.csv", "file", HINT), require_path(root / f"{p}_titles.csv", "file", HINT)]


def load(cfg: DataConfig, root: Path) -> RawData:
    pairs_p, titles_p = files(cfg, root)
    pairs = read_csv_strings(pairs_p, encoding=cards.encoding(CARD, pairs_p.name, "utf-8"))
    require_columns(pairs, pairs_p, ["user", "item", "timestamp"])
    pairs = parse_int(pairs, "timestamp", pairs_p, what="an integer timestamp", out="ts")
    unit = cfg.microlens.ts_unit
    # "auto": 1e11 s is the year 5138, so larger values can only be milliseconds.
    ms = unit == "ms" or (unit == "auto" and pairs["ts"].max() >= 10**11)
    inter = pairs.select(pl.col("user").str.strip_chars().alias("user_id"),
                         pl.col("item").str.strip_chars().alias("item_id"),
                         (pl.col("ts") // 1000 if ms else pl.col("ts")).alias("ts"),
                         pl.lit(1, dtype=pl.Int8).alias("label"), "line")
    titles = read_csv_strings(titles_p, encoding=cards.encoding(CARD, titles_p.name, "utf-8"))
    require_columns(titles, titles_p, ["item", "title"])
    covers = root / f"{cfg.microlens.prefix}_covers"
    items = titles.select(pl.col("item").str.strip_chars().alias("item_id"),
                          pl.col("title").fill_null("").str.strip_chars().alias("text"))
    paths = [str(covers / f"{i}.jpg") if (covers / f"{i}.jpg").exists() else None for i in items["item_id"]]
    items = items.with_columns(pl.Series("image_path", paths, dtype=pl.Utf8))
    return RawData(inter, items, None, str(pairs_p))
