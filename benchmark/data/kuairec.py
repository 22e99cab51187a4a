"""KuaiRec 2.0 (Gao et al., CIKM 2022; github.com/chongminggao/KuaiRec): a (nearly) fully observed exposure log.

Files in one folder (the release's `KuaiRec 2.0/data/` folder):

    big_matrix.csv | small_matrix.csv   user_id, video_id, play_duration, video_duration, time, date,
                                        timestamp (unix seconds, float), watch_ratio (= play / video duration)
    kuairec_caption_category.csv        video_id, manual_cover_text, caption, topic_tag,
                                        first/second/third_level_category_name (and their ids); Chinese text

Every logged view is an impression; label = watch_ratio >= data.kuairec.threshold (default 2.0, after the
KuaiRec README's example "like = 1 if watch_ratio > 2.0"). ts = floor(timestamp). Rows with an empty timestamp
cannot be placed in time: they are dropped with a DataWarning giving their count.

Item text = caption, cover text, topic tags and the category path ("美食 > 家常菜"), ". "-joined, empty parts and
"UNKNOWN" left out; category = the first-level category name.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import polars as pl

from benchmark.config.data import DataConfig
from benchmark.core.errors import DataError
from benchmark.data import cards
from benchmark.data.schema import (
    DataWarning,
    RawData,
    parse_int,
    read_csv_strings,
    require_columns,
    require_path,
)

CARD = "kuairec"
HINT = "see datasets/kuairec/README.md"
CAPTIONS = "kuairec_caption_category.csv"
CATEGORY_LEVELS = ("first_level_category_name", "second_level_category_name", "third_level_category_name")
TEXT_COLS = ("manual_cover_text", "caption", "topic_tag", *CATEGORY_LEVELS)
UNKNOWN = ("", "UNKNOWN", "nan", "[]")


def files(cfg: DataConfig, root: Path) -> list[Path]:
    return [require_path(root / f"{cfg.kuairec.matrix}_matrix.csv", "file", HINT),
            require_path(root / CAPTIONS, "file", HINT)]


def _float(df: pl.DataFrame, col: str, path: Path) -> pl.Series:
    """A Float64 column (Float32 would round unix seconds to minutes); a DataError names the first bad line."""
    parsed = df[col].str.strip_chars().cast(pl.Float64, strict=False)
    bad = parsed.is_null() | parsed.is_nan()
    if bad.any():
        row = df.filter(bad).row(0, named=True)
        raise DataError(f"{path}: line {row['line']}: column '{col}': expected a number, got {row[col]!r}")
    return parsed


def _interactions(path: Path, threshold: float) -> pl.DataFrame:
    df = read_csv_strings(path, encoding=cards.encoding(CARD, path.name, "utf-8"))
    require_columns(df, path, ["user_id", "video_id", "timestamp", "watch_ratio"])
    empty = df["timestamp"].fill_null("").str.strip_chars().is_in(["", "nan", "NaN"])
    if empty.any():
        warnings.warn(DataWarning(f"{path}: dropped {int(empty.sum())} rows with no timestamp (they cannot be "
                                  "placed in time)"), stacklevel=3)
        df = df.filter(~empty)
        if df.height == 0:
            raise DataError(f"{path}: no row has a timestamp; expected unix seconds in column 'timestamp'")
    ts = _float(df, "timestamp", path).floor().cast(pl.Int64)
    ratio = _float(df, "watch_ratio", path)
    return df.select(pl.col("user_id").str.strip_chars(), pl.col("video_id").str.strip_chars().alias("item_id"),
                     ts.alias("ts"), (ratio >= threshold).cast(pl.Int8).alias("label"), "line")


def _clean(col: str) -> pl.Expr:
    v = pl.col(col).fill_null("").str.strip_chars()
    if col == "topic_tag":  # "['旅行', '美食']" -> "旅行, 美食"
        v = v.str.replace_all(r"[\[\]'\"]", "").str.replace_all(r"\s*,\s*", ", ").str.strip_chars(", ")
    return pl.when(v.is_in(list(UNKNOWN))).then(pl.lit("")).otherwise(v)


def _items(path: Path) -> pl.DataFrame:
    df = read_csv_strings(path, encoding=cards.encoding(CARD, path.name, "utf-8"))
    require_columns(df, path, ["video_id", *TEXT_COLS])
    parse_int(df, "video_id", path, what="an integer video_id")  # checks only; ids stay text
    path_expr = pl.concat_list([_clean(c) for c in CATEGORY_LEVELS]).list.eval(
        pl.element().filter(pl.element() != "")).list.join(" > ")
    parts = [_clean("caption"), _clean("manual_cover_text"), _clean("topic_tag"), path_expr]
    text = pl.concat_list(parts).list.eval(pl.element().filter(pl.element() != "")).list.join(". ")
    first = _clean(CATEGORY_LEVELS[0])
    return df.select(pl.col("video_id").str.strip_chars().alias("item_id"), text.alias("text"),
                     pl.when(first != "").then(first).otherwise(None).alias("category"))


def load(cfg: DataConfig, root: Path) -> RawData:
    inter_p, items_p = files(cfg, root)
    inter = _interactions(inter_p, cfg.kuairec.threshold)
    return RawData(inter, _items(items_p), None, str(inter_p))
