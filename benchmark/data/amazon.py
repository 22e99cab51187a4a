"""Amazon Reviews 2023 (McAuley Lab), one category: `<category>.jsonl[.gz]` (reviews) and
`meta_<category>.jsonl[.gz]` (item metadata). Items are keyed by `parent_asin`, as the release's
own benchmark splits do; review timestamps are milliseconds and become seconds here.

Item text = title, features, description, categories and store (in that order, ". "-joined);
category = main_category; image_path = <images_dir>/<parent_asin>.{jpg,jpeg,png,webp} when that file exists
and PIL can decode it (benchmark/data/images.py; the images are the user's own download of the metadata's
`images` URLs, datasets/amazon-reviews-2023/README.md); label = rating >= data.label_threshold. The reviews
carry real low ratings as label-0 impressions; data.negatives adds sampled ones like on any other dataset.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import polars as pl

from benchmark.config.data import DataConfig
from benchmark.core.errors import DataError
from benchmark.data import cards, images
from benchmark.data.schema import RawData, label_from_rating, read_text

CARD = "amazon-reviews-2023"
HINT = "see datasets/amazon-reviews-2023/README.md"
IMAGES_SETTING = "data.amazon.images_dir"

REVIEW_SCHEMA = {"user_id": pl.Utf8, "parent_asin": pl.Utf8, "rating": pl.Float64, "timestamp": pl.Int64}
META_SCHEMA = {"parent_asin": pl.Utf8, "title": pl.Utf8, "features": pl.List(pl.Utf8),
               "description": pl.List(pl.Utf8), "categories": pl.List(pl.Utf8), "store": pl.Utf8,
               "main_category": pl.Utf8}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def _find(root: Path, stem: str) -> Path:
    for suffix in (".jsonl", ".jsonl.gz"):
        if (root / f"{stem}{suffix}").exists():
            return root / f"{stem}{suffix}"
    raise DataError(f"{root / (stem + '.jsonl')}: missing file (or .jsonl.gz); "
                    f"see datasets/amazon-reviews-2023/README.md")


def files(cfg: DataConfig, root: Path) -> list[Path]:
    if not root.exists():
        raise DataError(f"{root}: missing Amazon Reviews 2023 folder; see datasets/amazon-reviews-2023/README.md")
    return [_find(root, cfg.amazon.category), _find(root, f"meta_{cfg.amazon.category}")]


def _read_jsonl(path: Path, schema: dict[str, pl.DataType], required: list[str]) -> pl.DataFrame:
    encoding = cards.encoding(CARD, path.name, "utf-8")
    text = read_text(path, encoding, f"JSON lines ({encoding})")
    try:
        df = pl.read_ndjson(io.StringIO(text), schema=schema)
    except pl.exceptions.PolarsError as e:
        raise DataError(_locate_json_error(path, text, schema, str(e).splitlines()[0])) from None
    df = df.with_row_index("line", offset=1).with_columns(pl.col("line").cast(pl.Int64))
    for col in required:
        if df[col].null_count():
            line = df.filter(pl.col(col).is_null())["line"][0]
            raise DataError(f"{path}: line {line}: missing field '{col}' (expected {schema[col]})")
    return df


def _locate_json_error(path: Path, text: str, schema: dict[str, pl.DataType], msg: str) -> str:
    """Slow path, only after polars failed: find the first line that is not a JSON object with
    fields of the expected types."""
    kinds = {pl.Utf8: str, pl.Float64: (int, float), pl.Int64: int}
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            return f"{path}: line {n}: not valid JSON ({e.msg}); expected one JSON object per line"
        for key, dtype in schema.items():
            want = kinds.get(dtype)
            if want and obj.get(key) is not None and not isinstance(obj[key], want):
                return f"{path}: line {n}: field '{key}': expected {dtype}, got {obj[key]!r}"
    return f"{path}: cannot parse JSON lines: {msg}"


def load(cfg: DataConfig, root: Path) -> RawData:
    rev_p, meta_p = files(cfg, root)
    rev = _read_jsonl(rev_p, REVIEW_SCHEMA, list(REVIEW_SCHEMA))
    inter = rev.select(pl.col("user_id"), pl.col("parent_asin").alias("item_id"),
                       (pl.col("timestamp") // 1000).alias("ts"),
                       label_from_rating(pl.col("rating"), cfg.label_threshold),
                       pl.col("rating").cast(pl.Float32), "line")
    meta = _read_jsonl(meta_p, META_SCHEMA, ["parent_asin"])
    parts = [pl.col("title").fill_null(""),
             *(pl.col(c).fill_null([]).list.eval(pl.element().str.strip_chars()).list.join(" ")
               for c in ("features", "description")),
             pl.col("categories").fill_null([]).list.join(", "), pl.col("store").fill_null("")]
    joined = pl.concat_list([p.str.strip_chars() for p in parts]).list.eval(
        pl.element().filter(pl.element() != "")).list.join(". ")
    items = meta.select(pl.col("parent_asin").alias("item_id"), joined.alias("text"),
                        pl.col("main_category").alias("category"))
    folder = images_dir(cfg, root)
    paths: list[str | None] = [None] * items.height
    if folder is not None:
        found = images.scan(folder, items["item_id"].to_list(), IMAGE_SUFFIXES)
        images.warn_scan(found, folder, "product image", IMAGES_SETTING)
        paths = found.paths
    items = items.with_columns(pl.Series("image_path", paths, dtype=pl.Utf8))
    return RawData(inter, items.select("item_id", "text", "image_path", "category"), None, str(rev_p))


def images_dir(cfg: DataConfig, root: Path) -> Path | None:
    """data.amazon.images_dir (which must exist), else <root>/images when it exists, else None (no images)."""
    if cfg.amazon.images_dir:
        d = Path(cfg.amazon.images_dir).expanduser()
        d = d if d.is_absolute() else root / d
        return images.require_folder(d, IMAGES_SETTING, f"download the images into it or unset it; {HINT}")
    return root / "images" if (root / "images").is_dir() else None
