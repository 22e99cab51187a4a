"""Canonical schema of every loader's output and the helpers loaders share to read files strictly.

Canonical frames (polars), checked by `validate` at the loader's boundary:

    interactions: user_id Utf8, item_id Utf8, ts Int64 (unix seconds), label Int8 (0/1)
                  [, rating Float32] [, line Int64 = 1-based source line, for error messages]
                  [, test_only Boolean = the row goes to test whatever the split (an unbiased random-exposure log)]
    items:        item_id Utf8, text Utf8 (never null: "" when missing) [, image_path Utf8, category Utf8]
                  [, year Utf8 ("" when unknown), genres List(Utf8) (sorted, unique; [] when unknown)]
    users:        user_id Utf8 [, categorical feature columns Utf8]   (optional)
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import io
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl

from benchmark.core.errors import DataError


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
OPTIONAL_INTERACTION_TYPES: dict[str, pl.DataType] = {"rating": pl.Float32(), "line": pl.Int64(),
                                                      "test_only": pl.Boolean()}
ITEM_TYPES: dict[str, pl.DataType] = {"item_id": pl.Utf8(), "text": pl.Utf8()}
OPTIONAL_ITEM_TYPES: dict[str, pl.DataType] = {"image_path": pl.Utf8(), "category": pl.Utf8(),
                                               "year": pl.Utf8(), "genres": pl.List(pl.Utf8())}


def require_path(path: Path, what: str, hint: str = "") -> Path:
    if not path.exists():
        extra = f"; {hint}" if hint else ""
        raise DataError(f"{path}: missing {what}{extra}")
    return path


# ---------------------------------------------------------------- reading raw files strictly
# Every raw byte a loader sees comes through `open_bytes`, so a folder, an unreadable file or an I/O
# error is a DataError naming the file, never an OSError with a traceback.

_MAGIC = (  # leading bytes -> (what the file looks like, what to do)
    (b"\x1f\x8b", "gzip-compressed data", "decompress it first (gunzip), or name it .gz where the format allows"),
    (b"PAR1", "a parquet file", "the generic loader reads parquet by the .parquet extension"),
    (b"PK\x03\x04", "a zip archive", "unpack the archive and point --root at the unpacked folder"),
    (b"PK\x05\x06", "an empty zip archive", "unpack the archive and point --root at the unpacked folder"),
)
_SNIFF = 8192  # bytes looked at for NUL bytes
_SEPARATORS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "'|'"}


@contextlib.contextmanager
def open_bytes(path: Path, what: str = "file") -> Iterator[BinaryIO]:
    """`path` opened for reading bytes. Missing, a folder, unreadable (permission, I/O error while
    opening or reading inside the block): a DataError naming the file."""
    require_path(path, what)
    try:
        with path.open("rb") as f:
            yield f
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder; expected a {what}") from None
    except PermissionError:
        raise DataError(f"{path}: cannot read the {what}: permission denied") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the {what}: {e.strerror or e}") from None


def read_bytes(path: Path, what: str = "file") -> bytes:
    """The whole file's bytes (see `open_bytes` for the errors)."""
    with open_bytes(path, what) as f:
        return f.read()


def looks_like(head: bytes) -> tuple[str, str] | None:
    """(what, what to do) when the leading bytes are a known container format, else None."""
    for magic, what, todo in _MAGIC:
        if head.startswith(magic):
            return what, todo
    return None


def sniff_text(path: Path, data: bytes, expected: str) -> None:
    """DataError when `data` (a file's bytes, decompressed) is visibly not text: gzip, parquet, zip
    (by magic bytes) or binary (NUL bytes in the first 8 KiB)."""
    found = looks_like(data[:8])
    if found:
        raise DataError(f"{path}: looks like {found[0]}, expected {expected}; {found[1]}")
    nul = data.find(b"\x00", 0, _SNIFF)
    if nul >= 0:
        line = data[:nul].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: NUL byte: looks like a binary file (or UTF-16 text), "
                        f"expected {expected}")


def read_text(path: Path, encoding: str = "utf-8", expected: str = "text") -> str:
    """Whole file as text (gzip by suffix), CRLF normalised to LF, a UTF-8 byte-order mark dropped.

    A DataError names the file when it cannot be read, is compressed/parquet/zip/binary (`sniff_text`),
    is empty, or has bytes that are not valid `encoding` (with the line of the first one).
    `expected` describes the format for the messages ("tab-separated text").
    """
    data = read_bytes(path)
    if path.suffix == ".gz":
        if not data.startswith(b"\x1f\x8b"):
            raise DataError(f"{path}: named .gz but not gzip-compressed; expected gzip-compressed {expected}")
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: truncated or corrupt gzip file ({e})") from None
    sniff_text(path, data, expected)
    if not data.strip():
        raise DataError(f"{path}: empty file; expected at least one row of {expected}")
    if codecs.lookup(encoding).name == "utf-8" and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: byte 0x{data[e.start]:02x} is not valid {encoding}; "
                        f"expected {encoding} text") from None
    return text.replace("\r\n", "\n")


def sep_name(sep: str) -> str:
    return _SEPARATORS.get(sep, repr(sep))


def _first_line(text: str) -> tuple[int, str]:
    """(1-based number, text) of the first non-blank line, without splitting the whole file."""
    pos, n = 0, 1
    while True:
        end = text.find("\n", pos)
        line = text[pos:] if end < 0 else text[pos:end]
        if line.strip() or end < 0:
            return n, line
        pos, n = end + 1, n + 1


def _check_separator(path: Path, text: str, sep: str, columns: list[str] | None) -> None:
    """A wrong separator leaves one field per line: say so, and which separator the line seems to use.

    Headerless files (`columns` given) must have len(columns) >= 2 fields; a header file is only
    flagged when its header holds another separator (a one-column header file may be legitimate)."""
    n, first = _first_line(text)
    if sep in first or (columns is not None and len(columns) < 2):
        return
    other = next((s for s in _SEPARATORS if s != sep and s in first), None)
    if columns is None and other is None:
        return
    seems = f"; the line looks {sep_name(other)}-separated" if other else ""
    where = f"line {n}: the header" if columns is None else f"line {n}"
    want = (f"{len(columns)} {sep_name(sep)}-separated fields ({', '.join(columns)})" if columns
            else f"{sep_name(sep)}-separated columns")
    raise DataError(f"{path}: {where} has one field {first[:60]!r}; expected {want}{seems}")


def read_csv_strings(path: Path, *, sep: str = ",", columns: list[str] | None = None,
                     encoding: str = "utf-8", quote: str | None = '"', header_lines: int = 1) -> pl.DataFrame:
    """Read a delimited file with every column as Utf8, plus `line` (1-based source line).

    columns=None: the file has a header naming the columns; otherwise the file has no header and
    `columns` names them. Parsing of numbers happens in `parse_int`/`parse_float` so errors can
    name the line. Unreadable, binary, empty, header-only, badly encoded or wrongly separated
    files raise a DataError naming the file (and the line).
    """
    expected = f"{sep_name(sep)}-separated {encoding} text"
    text = read_text(path, encoding, expected)
    _check_separator(path, text, sep, columns)
    try:
        df = pl.read_csv(io.StringIO(text), separator=sep, has_header=columns is None,
                         new_columns=columns, infer_schema=False, quote_char=quote,
                         truncate_ragged_lines=False)
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{path}: cannot parse as {expected}: {str(e).splitlines()[0]}") from None
    if df.height == 0:
        raise DataError(f"{path}: no data rows (only a header); expected at least one")
    first = header_lines if columns is None else 0
    return df.with_row_index("line", offset=first + 1).with_columns(pl.col("line").cast(pl.Int64))


def read_parquet_strings(path: Path) -> pl.DataFrame:
    """A parquet file with every column cast to Utf8, plus `line` (1-based row). Not parquet (no
    PAR1 magic: csv text, gzip, zip), truncated, corrupt or without rows: a DataError naming the file."""
    data = read_bytes(path)
    if not data:
        raise DataError(f"{path}: empty file; expected a parquet file")
    if not data.startswith(b"PAR1"):
        found = looks_like(data[:8])
        what = (f"looks like {found[0]}; expected a parquet file" if found else
                "not a parquet file (no PAR1 magic bytes at the start); expected parquet (csv text needs a .csv name)")
        raise DataError(f"{path}: {what}")
    if len(data) < 12 or not data.endswith(b"PAR1"):
        raise DataError(f"{path}: truncated parquet file ({len(data)} bytes, no PAR1 footer at the end); "
                        "expected a complete parquet file")
    try:
        df = pl.read_parquet(io.BytesIO(data))
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as e:
        raise DataError(f"{path}: corrupt parquet file: {str(e).splitlines()[0]}") from None
    if df.height == 0:
        raise DataError(f"{path}: no data rows; expected at least one")
    df = df.with_columns(pl.all().cast(pl.Utf8))
    return df.with_row_index("line", offset=1).with_columns(pl.col("line").cast(pl.Int64))


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
    """docs/data.md: rating >= threshold (default 4) is a positive; every rated pair is an impression."""
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
