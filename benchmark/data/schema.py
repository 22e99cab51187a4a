"""Canonical schema of every loader's output and the helpers loaders share to read files strictly.

Canonical frames (polars), checked by `validate` at the loader's boundary:

    interactions: user_id Utf8, item_id Utf8, ts Int64 (unix seconds), label Int8 (0/1)
                  [, rating Float32] [, line Int64 = 1-based source line, for error messages]
    items:        item_id Utf8, text Utf8 (never null: "" when missing) [, image_path Utf8, category Utf8]
                  [, year Utf8 ("" when unknown), genres List(Utf8) (sorted, unique; [] when unknown)]
    users:        user_id Utf8 [, categorical feature columns Utf8]   (optional)
"""

from __future__ import annotations

import gzip
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from benchmark.errors import DataError


class DataWarning(UserWarning):
    """Rows dropped where dropping is the documented behaviour; the message gives the count."""


@dataclass(frozen=True)
class RawData:
    """A loader's output in the canonical schema (see the module docstring)."""

    interactions: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame | None
    source: str  # the interactions file, named in error messages


INTERACTION_TYPES: dict[str, pl.DataType] = {
    "user_id": pl.Utf8(), "item_id": pl.Utf8(), "ts": pl.Int64(), "label": pl.Int8()}
OPTIONAL_INTERACTION_TYPES: dict[str, pl.DataType] = {"rating": pl.Float32(), "line": pl.Int64()}
ITEM_TYPES: dict[str, pl.DataType] = {"item_id": pl.Utf8(), "text": pl.Utf8()}
OPTIONAL_ITEM_TYPES: dict[str, pl.DataType] = {"image_path": pl.Utf8(), "category": pl.Utf8(),
                                               "year": pl.Utf8(), "genres": pl.List(pl.Utf8())}


def require_path(path: Path, what: str, hint: str = "") -> Path:
    if not path.exists():
        extra = f"; {hint}" if hint else ""
        raise DataError(f"{path}: missing {what}{extra}")
    return path


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """Whole file as text (gzip by suffix), CRLF normalised to LF; a DataError names the line of
    the first non-UTF-8 byte, or says the file is empty."""
    require_path(path, "file")
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: not a valid gzip file ({e})") from None
    if not data.strip():
        raise DataError(f"{path}: empty file; expected at least one row")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: byte 0x{data[e.start]:02x} is not valid {encoding}; "
                        f"expected {encoding} text") from None
    return text.replace("\r\n", "\n")


def read_csv_strings(path: Path, *, sep: str = ",", columns: list[str] | None = None,
                     encoding: str = "utf-8", quote: str | None = '"', header_lines: int = 1) -> pl.DataFrame:
    """Read a delimited file with every column as Utf8, plus `line` (1-based source line).

    columns=None: the file has a header naming the columns; otherwise the file has no header and
    `columns` names them. Parsing of numbers happens in `parse_int`/`parse_float` so errors can
    name the line.
    """
    text = read_text(path, encoding)
    try:
        df = pl.read_csv(io.StringIO(text), separator=sep, has_header=columns is None,
                         new_columns=columns, infer_schema=False, quote_char=quote,
                         truncate_ragged_lines=False)
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{path}: cannot parse as {sep!r}-separated text: {str(e).splitlines()[0]}") from None
    if df.height == 0:
        raise DataError(f"{path}: no data rows; expected at least one")
    first = header_lines if columns is None else 0
    return df.with_row_index("line", offset=first + 1).with_columns(pl.col("line").cast(pl.Int64))


def require_columns(df: pl.DataFrame, path: Path | str, needed: list[str]) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        found = [c for c in df.columns if c != "line"]
        raise DataError(f"{path}: missing column(s) {missing}; found {found}")


def _first_bad(df: pl.DataFrame, col: str, bad: pl.Series) -> tuple[int | None, object]:
    row = df.filter(bad).row(0, named=True)
    return row.get("line"), row[col]


def parse_int(df: pl.DataFrame, col: str, path: Path | str, *, what: str = "an integer",
              out: str | None = None) -> pl.DataFrame:
    """Cast a Utf8 column to Int64 (decimal-looking values like "881250949.0" allowed); a DataError
    names the first unparsable line."""
    src = df[col].str.strip_chars()
    parsed = src.cast(pl.Int64, strict=False)
    as_float = src.cast(pl.Float64, strict=False)
    fallback = as_float.filter(parsed.is_null())
    if parsed.null_count() and fallback.len() and (fallback.round(0) == fallback).all():
        parsed = parsed.fill_null(as_float.cast(pl.Int64, strict=False))
    bad = parsed.is_null()
    if bad.any():
        line, value = _first_bad(df, col, bad)
        raise DataError(f"{path}: line {line}: column '{col}': expected {what}, got {value!r}")
    return df.with_columns(parsed.alias(out or col))


def parse_float(df: pl.DataFrame, col: str, path: Path | str, *, out: str | None = None) -> pl.DataFrame:
    parsed = df[col].str.strip_chars().cast(pl.Float64, strict=False)
    bad = parsed.is_null() | parsed.is_nan()
    if bad.any():
        line, value = _first_bad(df, col, bad)
        raise DataError(f"{path}: line {line}: column '{col}': expected a number, got {value!r}")
    return df.with_columns(parsed.cast(pl.Float32).alias(out or col))


def label_from_rating(rating: pl.Expr, threshold: float) -> pl.Expr:
    """DESIGN.md: rating >= threshold (default 4) is a positive; every rated pair is an impression."""
    return (rating >= threshold).cast(pl.Int8).alias("label")


def _check_types(df: pl.DataFrame, where: str, required: dict[str, pl.DataType],
                 optional: dict[str, pl.DataType]) -> None:
    require_columns(df, where, list(required))
    for col, dtype in {**required, **optional}.items():
        if col in df.columns and df.schema[col] != dtype:
            raise DataError(f"{where}: column '{col}' has type {df.schema[col]}, expected {dtype}")


def validate(raw: RawData, *, on_duplicate: str, on_unknown_item: str) -> RawData:
    """Check the canonical schema; drop or reject duplicate (user, item, ts) rows and interactions
    naming unknown items as configured. Returns a RawData without the `line` column."""
    inter, items, src = raw.interactions, raw.items, raw.source
    _check_types(inter, src, INTERACTION_TYPES, OPTIONAL_INTERACTION_TYPES)
    _check_types(items, f"{src} (items)", ITEM_TYPES, OPTIONAL_ITEM_TYPES)
    if inter.height == 0:
        raise DataError(f"{src}: no interactions; expected at least one")
    for col in INTERACTION_TYPES:
        if inter[col].null_count():
            raise DataError(f"{src}: column '{col}' has {inter[col].null_count()} missing values")
    if items["item_id"].null_count() or items["text"].null_count():
        raise DataError(f"{src} (items): item_id and text must not be null (use \"\" for no text)")
    dup_items = items["item_id"].is_duplicated()
    if dup_items.any():
        raise DataError(f"{src} (items): item_id {items.filter(dup_items)['item_id'][0]!r} appears "
                        f"{int(dup_items.sum())} times; expected one row per item")
    if "line" not in inter.columns:
        inter = inter.with_row_index("line", offset=1).with_columns(pl.col("line").cast(pl.Int64))
    inter = _dedup(inter, src, on_duplicate)
    inter = _known_items(inter, items, src, on_unknown_item)
    users = raw.users
    if users is not None:
        require_columns(users, f"{src} (users)", ["user_id"])
        bad = [c for c, t in users.schema.items() if t != pl.Utf8()]
        if bad:
            raise DataError(f"{src} (users): columns {bad} must be Utf8 (categorical features)")
    return RawData(inter.drop("line"), items, users, src)


def _dedup(inter: pl.DataFrame, src: str, on_duplicate: str) -> pl.DataFrame:
    dup = inter.select(~pl.struct("user_id", "item_id", "ts").is_first_distinct()).to_series()  # repeats only
    if not dup.any():
        return inter
    first = inter.filter(dup).row(0, named=True)
    if on_duplicate == "error":
        raise DataError(f"{src}: line {first['line']}: repeated (user, item, ts) = "
                        f"({first['user_id']!r}, {first['item_id']!r}, {first['ts']}); expected each "
                        f"once (set data.on_duplicate = \"drop\" to keep the first)")
    out = inter.unique(subset=["user_id", "item_id", "ts"], keep="first", maintain_order=True)
    warnings.warn(DataWarning(f"{src}: dropped {inter.height - out.height} duplicate (user, item, ts) "
                              f"rows (kept the first in file order)"), stacklevel=3)
    return out


def _known_items(inter: pl.DataFrame, items: pl.DataFrame, src: str, on_unknown_item: str) -> pl.DataFrame:
    unknown = ~inter["item_id"].is_in(items["item_id"].implode())
    if not unknown.any():
        return inter
    n = int(unknown.sum())
    first = inter.filter(unknown).row(0, named=True)
    if on_unknown_item == "error":
        raise DataError(f"{src}: line {first['line']}: item_id {first['item_id']!r} is not in the item "
                        f"table ({n} rows name unknown items; set data.on_unknown_item = \"drop\" to drop them)")
    warnings.warn(DataWarning(f"{src}: dropped {n} interactions naming items missing from the item table"),
                  stacklevel=3)
    return inter.filter(~unknown)
