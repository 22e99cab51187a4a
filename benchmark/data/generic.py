"""Anyone's own data: interactions and items (and optionally users) as csv or parquet, with the
column mapping of `data.generic` (benchmark/config/data.py GenericConfig).

An implicit log is enough: (user, item, time) with no rating or label column makes every row a positive, and
`data.generic.items = ""` (no item file) makes the catalogue the log's items, with no text. Add sampled
negatives with `data.negatives` (docs/data.md, "Your own log, end to end")."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from benchmark.config.data import DataConfig, GenericConfig
from benchmark.core.errors import DataError
from benchmark.data import cards
from benchmark.data.schema import (
    RawData,
    label_from_rating,
    parse_float,
    parse_int,
    read_csv_strings,
    read_parquet_strings,
    require_columns,
    require_path,
)

CARD = "generic"
HINT = "see datasets/generic/README.md and data.generic in the config"


def _path(root: Path, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else root / p


def files(cfg: DataConfig, root: Path) -> list[Path]:
    g = cfg.generic
    out = [require_path(_path(root, g.interactions), "interactions file", HINT)]
    out += [require_path(_path(root, g.items), "items file", HINT)] if g.items else []
    return out + ([require_path(_path(root, g.users), "users file", HINT)] if g.users else [])


def _read(path: Path) -> pl.DataFrame:
    """Every column as Utf8 plus `line` (csv: source line; parquet: 1-based row); the format is
    chosen by the extension, and content that does not match it is a DataError naming the file."""
    if path.suffix == ".parquet":
        return read_parquet_strings(path)
    if path.suffix in (".csv", ".gz"):
        return read_csv_strings(path, encoding=cards.encoding(CARD, path.name, "utf-8"))
    raise DataError(f"{path}: unsupported extension {path.suffix!r}; expected .csv, .csv.gz or .parquet")


def _ts(df: pl.DataFrame, g: GenericConfig, path: Path) -> pl.DataFrame:
    if not g.ts_format:
        return parse_int(df, g.ts_col, path, what="integer unix seconds", out="ts")
    parsed = df[g.ts_col].str.strptime(pl.Datetime("us"), g.ts_format, strict=False)
    bad = parsed.is_null()
    if bad.any():
        row = df.filter(bad).row(0, named=True)
        raise DataError(f"{path}: line {row['line']}: column '{g.ts_col}': expected a time in format "
                        f"{g.ts_format!r}, got {row[g.ts_col]!r}")
    return df.with_columns((parsed.dt.epoch("s")).alias("ts"))


def _label(df: pl.DataFrame, g: GenericConfig, path: Path, threshold: float) -> tuple[pl.DataFrame, list[str]]:
    extra: list[str] = []
    if g.rating_col and g.rating_col in df.columns:
        df = parse_float(df, g.rating_col, path, out="rating")
        extra = ["rating"]
    if g.label_col:
        require_columns(df, path, [g.label_col])
        df = parse_int(df, g.label_col, path, what="a 0/1 label", out="label")
        bad = ~df["label"].is_in([0, 1])
        if bad.any():
            row = df.filter(bad).row(0, named=True)
            raise DataError(f"{path}: line {row['line']}: column '{g.label_col}': expected 0 or 1, got {row['label']}")
        return df.with_columns(pl.col("label").cast(pl.Int8)), extra
    if extra:
        return df.with_columns(label_from_rating(pl.col("rating"), threshold)), extra
    return df.with_columns(pl.lit(1, dtype=pl.Int8).alias("label")), extra  # implicit feedback


def load(cfg: DataConfig, root: Path) -> RawData:
    g = cfg.generic
    paths = files(cfg, root)
    df = _read(paths[0])
    require_columns(df, paths[0], [g.user_col, g.item_col, g.ts_col])
    df = _ts(df, g, paths[0])
    df, extra = _label(df, g, paths[0], cfg.label_threshold)
    inter = df.select(pl.col(g.user_col).str.strip_chars().alias("user_id"),
                      pl.col(g.item_col).str.strip_chars().alias("item_id"), "ts", "label", *extra, "line")
    if not g.items:  # no item file: the catalogue is the log's items, without text
        ids = inter["item_id"].unique(maintain_order=True)
        items = pl.DataFrame({"item_id": ids, "text": [""] * ids.len()}, schema={"item_id": pl.Utf8, "text": pl.Utf8})
        return RawData(inter, items, _users(g, paths[1]) if g.users else None, str(paths[0]))
    it = _read(paths[1])
    require_columns(it, paths[1], [g.items_item_col, *g.text_cols, *(c for c in (g.image_col, g.category_col) if c)])
    text = pl.concat_list([pl.col(c).fill_null("").str.strip_chars() for c in g.text_cols]).list.eval(
        pl.element().filter(pl.element() != "")).list.join(". ") if g.text_cols else pl.lit("")
    cols = [pl.col(g.items_item_col).str.strip_chars().alias("item_id"), text.alias("text")]
    if g.image_col:
        cols.append(pl.col(g.image_col).alias("image_path"))
    if g.category_col:
        cols.append(pl.col(g.category_col).alias("category"))
    items = it.select(cols)
    return RawData(inter, items, _users(g, paths[2]) if g.users else None, str(paths[0]))


def _users(g: GenericConfig, path: Path) -> pl.DataFrame:
    us = _read(path)
    require_columns(us, path, [g.users_user_col])
    return us.drop("line").rename({g.users_user_col: "user_id"}).with_columns(pl.col("user_id").str.strip_chars())
