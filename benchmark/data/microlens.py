"""MicroLens (Ni et al. 2023, github.com/westlake-repl/MicroLens), one release named by data.microlens.prefix:

    <prefix>_pairs.csv       header user,item,timestamp: one click per row (timestamps in ms in the releases)
    <prefix>_titles.csv      MicroLens-50k: header item,title (titles quoted when they hold a comma)
    <prefix>_title_en.csv    MicroLens-100k: no header, item,title (English titles)
    covers/<item>.jpg        the cover images (data.microlens.covers_dir; the release zips them as
                             <prefix>_covers, which is read when there is no covers/ folder)

The pairs are clicks only, so every impression has label 1; the release has no negatives and this loader
invents none: `data.negatives` samples them when the data is prepared (the packaged microlens suite does).
`<prefix>_pairs.tsv` (one user per row, items in time order, no timestamps) is not read: the temporal splits
need the timestamps.
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

import polars as pl

from benchmark.config.data import DataConfig
from benchmark.core.errors import DataError
from benchmark.data import cards, images
from benchmark.data.schema import (
    DataWarning,
    RawData,
    parse_int,
    read_csv_strings,
    read_text,
    require_columns,
)

CARD = "microlens"
HINT = "see datasets/microlens/README.md"
COVERS_SETTING = "data.microlens.covers_dir"
COVER_SUFFIXES = (".jpg",)
TITLE_HEADERS = ("item", "item_id", "video_id", "videoid")  # a first field naming the column, not an item


def _pairs(cfg: DataConfig, root: Path) -> Path:
    p = root / f"{cfg.microlens.prefix}_pairs.csv"
    if p.exists():
        return p
    tsv = p.with_suffix(".tsv")
    why = (f"; {tsv.name} is there, but it lists each user's items without timestamps, which the temporal "
           "splits need: download the .csv from the same page" if tsv.exists() else "")
    raise DataError(f"{p}: missing file (user,item,timestamp clicks){why}; {HINT}")


def _titles(cfg: DataConfig, root: Path) -> Path:
    names = [f"{cfg.microlens.prefix}_titles.csv", f"{cfg.microlens.prefix}_title_en.csv"]
    for name in names:
        if (root / name).exists():
            return root / name
    raise DataError(f"{root / names[0]}: missing file (nor {names[1]}); expected the item titles; {HINT}")


def files(cfg: DataConfig, root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"{root}: missing MicroLens folder; {HINT}")
    return [_pairs(cfg, root), _titles(cfg, root)]


def covers_dir(cfg: DataConfig, root: Path) -> Path | None:
    """The covers folder: data.microlens.covers_dir (which must exist), else <root>/covers or
    <root>/<prefix>_covers, whichever exists; None when neither does."""
    if cfg.microlens.covers_dir:
        d = Path(cfg.microlens.covers_dir).expanduser()
        d = d if d.is_absolute() else root / d
        return images.require_folder(d, COVERS_SETTING, f"download the covers or set it to another folder; {HINT}")
    for d in (root / "covers", root / f"{cfg.microlens.prefix}_covers"):
        if d.is_dir():
            return d
    return None


def read_titles(path: Path) -> pl.DataFrame:
    """(item_id, text, line) from either titles layout. Rows are split at the first comma, so a title holding
    commas reads whole whether or not it is quoted; a header line is recognised by its first field."""
    text = read_text(path, cards.encoding(CARD, path.name, "utf-8"), "comma-separated utf-8 text")
    reader = csv.reader(io.StringIO(text))
    ids, titles, lines = [], [], []
    for rec in reader:
        line = reader.line_num
        if not rec or not any(f.strip() for f in rec):
            continue
        if not ids and line == 1 and rec[0].strip().lower() in TITLE_HEADERS:
            continue
        item_id = rec[0].strip()
        if not item_id:
            raise DataError(f"{path}: line {line}: empty item id; expected item,title")
        ids.append(item_id)
        titles.append(",".join(rec[1:]).strip())
        lines.append(line)
    if not ids:
        raise DataError(f"{path}: no data rows (only a header); expected at least one item,title row")
    return pl.DataFrame({"item_id": ids, "text": titles, "line": lines},
                        schema={"item_id": pl.Utf8, "text": pl.Utf8, "line": pl.Int64})


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
    items = read_titles(titles_p).drop("line")
    folder = covers_dir(cfg, root)
    if folder is None:
        warnings.warn(DataWarning(f"{root}: no covers folder ({root / 'covers'} or "
                                  f"{root / (cfg.microlens.prefix + '_covers')}), so every image_path is null; "
                                  f"set {COVERS_SETTING} to read covers; {HINT}"), stacklevel=2)
        paths: list[str | None] = [None] * items.height
    else:
        found = images.scan(folder, items["item_id"].to_list(), COVER_SUFFIXES)
        images.warn_scan(found, folder, "cover", COVERS_SETTING)
        paths = found.paths
    items = items.with_columns(pl.Series("image_path", paths, dtype=pl.Utf8))
    return RawData(inter, items, None, str(pairs_p))
