"""KuaiRand (Gao et al., CIKM 2022; github.com/chongminggao/KuaiRand): an exposure log with real negatives.

Files of one release in one folder (the release's `data/` folder), `<v>` = data.kuairand.variant:

    log_standard_4_08_to_4_21_<v>.csv   standard feed, 2022-04-08 .. 04-21   (27k: _part1.csv and _part2.csv)
    log_standard_4_22_to_5_08_<v>.csv   standard feed, 2022-04-22 .. 05-08   (27k: _part1.csv and _part2.csv)
    log_random_4_22_to_5_08_<v>.csv     randomly exposed videos (read only with data.kuairand.test_on_random)
    video_features_basic_<v>.csv        item metadata: video_id, video_type, upload_type, tag, ...

Log columns used: user_id, video_id, time_ms (unix milliseconds -> ts seconds, floored) and the label signal
(data.kuairand.label, default is_click; 0/1). Every logged exposure is an impression, so label-0 rows are real
negatives. The release has no item text: `text` is a metadata sentence, "tags: 12, 65. type: NORMAL. upload:
ShortImport" (empty parts left out), and category = the first tag id.
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

CARD = "kuairand"
HINT = "see datasets/kuairand/README.md"
PERIODS = ("4_08_to_4_21", "4_22_to_5_08")


def log_names(variant: str) -> list[str]:
    """The standard logs of a release, in time order."""
    if variant == "27k":
        return [f"log_standard_{p}_27k_part{k}.csv" for p in PERIODS for k in (1, 2)]
    return [f"log_standard_{p}_{variant}.csv" for p in PERIODS]


def files(cfg: DataConfig, root: Path) -> list[Path]:
    """Standard logs, [the random log,] the basic video features: every file the data key hashes."""
    k = cfg.kuairand
    names = log_names(k.variant) + ([f"log_random_4_22_to_5_08_{k.variant}.csv"] if k.test_on_random else [])
    names.append(f"video_features_basic_{k.variant}.csv")
    return [require_path(root / n, "file", HINT) for n in names]


def _read_log(path: Path, label_col: str, test_only: bool | None) -> pl.DataFrame:
    df = read_csv_strings(path, encoding=cards.encoding(CARD, path.name, "utf-8"))
    require_columns(df, path, ["user_id", "video_id", "time_ms", label_col])
    df = parse_int(df, "time_ms", path, what="integer unix milliseconds")
    df = parse_int(df, label_col, path, what="a 0/1 signal", out="label")
    bad = ~df["label"].is_in([0, 1])
    if bad.any():
        row = df.filter(bad).row(0, named=True)
        raise DataError(f"{path}: line {row['line']}: column '{label_col}': expected 0 or 1, got {row['label']}")
    cols = [pl.col("user_id").str.strip_chars(), pl.col("video_id").str.strip_chars().alias("item_id"),
            (pl.col("time_ms") // 1000).alias("ts"), pl.col("label").cast(pl.Int8), "line"]
    if test_only is not None:
        cols.append(pl.lit(test_only).alias("test_only"))
    return df.select(cols)


def _known(log: pl.DataFrame, known: pl.Series, path: Path, on_unknown_item: str) -> pl.DataFrame:
    """Videos missing from the feature file, checked per log so the message names the right file and line."""
    unknown = ~log["item_id"].is_in(known.implode())
    if not unknown.any():
        return log
    first = log.filter(unknown).row(0, named=True)
    if on_unknown_item == "error":
        raise DataError(f"{path}: line {first['line']}: video_id {first['item_id']!r} is not in the video feature "
                        f"file ({int(unknown.sum())} rows name unknown videos; set data.on_unknown_item = \"drop\" "
                        "to drop them)")
    warnings.warn(DataWarning(f"{path}: dropped {int(unknown.sum())} rows naming videos missing from the video "
                              "feature file"), stacklevel=3)
    return log.filter(~unknown)


def _items(path: Path) -> pl.DataFrame:
    df = read_csv_strings(path, encoding=cards.encoding(CARD, path.name, "utf-8"))
    require_columns(df, path, ["video_id", "video_type", "upload_type", "tag"])
    parse_int(df, "video_id", path, what="an integer video_id")  # checks only; ids stay text
    tags = (pl.col("tag").fill_null("").str.split(",").list.eval(pl.element().str.strip_chars())
            .list.eval(pl.element().filter(pl.element() != "")))
    parts = [pl.lit("tags: ") + tags.list.join(", "), pl.lit("type: ") + pl.col("video_type").fill_null(""),
             pl.lit("upload: ") + pl.col("upload_type").fill_null("")]
    # a part is left out when its value is empty ("tags: " alone says nothing)
    kept = [pl.when(p.str.ends_with(": ")).then(pl.lit("")).otherwise(p) for p in parts]
    text = pl.concat_list(kept).list.eval(pl.element().filter(pl.element() != "")).list.join(". ")
    return df.select(pl.col("video_id").str.strip_chars().alias("item_id"), text.alias("text"),
                     tags.list.first().alias("category"))


def load(cfg: DataConfig, root: Path) -> RawData:
    k = cfg.kuairand
    paths = files(cfg, root)
    items = _items(paths[-1])
    n_standard = len(log_names(k.variant))
    logs = []
    for i, path in enumerate(paths[:-1]):
        test_only = (i >= n_standard) if k.test_on_random else None
        logs.append(_known(_read_log(path, k.label, test_only), items["item_id"], path, cfg.on_unknown_item))
    inter = pl.concat(logs)
    # validate's duplicate messages give a line number; with several logs it is the line in its own file
    source = str(paths[0]) if len(logs) == 1 else f"{paths[0]} (+ {len(logs) - 1} more logs)"
    return RawData(inter, items, None, source)
