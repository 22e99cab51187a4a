"""`prepare(cfg) -> PreparedData`: load -> validate -> k-core -> index -> split -> cold items ->
history -> popularity, cached as parquet under a fingerprint of the raw files and the config.

The cache is the suite's stage cache (benchmark.core.cache.StageCache, stage "data", key `data_key(cfg)`);
`qarm-bench data` commands use one rooted at runs/cache (or --cache-dir).

Item metadata: the prepared items always carry `year` (Utf8) and `genres` (List(Utf8)), so one
schema serves every dataset; the MovieLens loaders fill them (benchmark/data/movielens.py says how),
every other dataset gets "" and [] on every row, the same values MovieLens uses for "unknown".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl

from benchmark.config.data import DataConfig, SplitConfig
from benchmark.core.cache import StageCache
from benchmark.core.configlib import plain_without_defaults
from benchmark.core.errors import DataError
from benchmark.data import images, negatives, registry, splits, synthetic
from benchmark.data.history import build_history, build_history_recbole
from benchmark.data.prepared import PreparedData, load_prepared, save_prepared
from benchmark.data.schema import DataWarning, RawData, validate

FORMAT_VERSION = 3  # bump when the prepared layout or any step's semantics change (3: year, genres; cold =
# no training impression)
DEFAULT_CACHE = Path("runs") / "cache"
STAGE = "data"
# DataConfig fields added after keys were published (dotted for a field of a nested section): left out of the
# fingerprint while at their default, so every key computed before they existed stays the same; any other value
# enters it.
LATER_FIELDS = ("kuairand", "kuairec", "negatives", "microlens.covers_dir", "split.seeds", "split.seed_pairing",
                "synthetic.content", "split.val_cold_item_frac")


def fingerprint(cfg: DataConfig, files: list[dict]) -> str:
    """sha256 over the config (minus cache_dir and root: the files' contents stand for them, and minus
    LATER_FIELDS at their defaults) and every raw file's name, size and sha256 (an image folder: its listing,
    benchmark/data/images.py `folder_entry`)."""
    c = plain_without_defaults(cfg, LATER_FIELDS)
    c.pop("cache_dir")
    c.pop("root")
    blob = json.dumps({"v": FORMAT_VERSION, "cfg": c, "files": files}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _locate(cfg: DataConfig) -> tuple[registry.Dataset, Path | None, str]:
    """(dataset entry, raw root or None for synthetic, fingerprint); validates settings and raw files."""
    ds = registry.get(cfg.dataset)
    if ds.name == "synthetic":
        return ds, None, fingerprint(cfg, [])
    root = registry.resolve_root(cfg)
    try:
        raw_files = ds.files(cfg, root)
    except DataError as e:  # the raw files are not where the config points: say how to point elsewhere
        raise DataError(f"{e}\n  (the dataset's folder is {root}; point it elsewhere with `--set data.root=PATH` "
                        f"on `qarm-bench run`/`plan`, or `--root PATH` on `qarm-bench data`)") from None
    files = registry.hash_and_verify(ds, raw_files, cfg.verify_sha256)
    folder = ds.image_folder(cfg, root) if ds.image_folder is not None else None
    return ds, root, fingerprint(cfg, files + ([images.folder_entry(folder)] if folder is not None else []))


def data_fingerprint(cfg: DataConfig) -> str:
    """The fingerprint `prepare` caches under, without preparing (hashes the raw files only)."""
    return _locate(cfg)[2]


def data_key(cfg: DataConfig) -> str:
    """The data stage's cache key: `<dataset>-<fingerprint[:16]>` (validates settings, hashes the raw files)."""
    return f"{cfg.dataset}-{data_fingerprint(cfg)[:16]}"


def prepare(cfg: DataConfig, *, cache: StageCache | None = None, cache_dir: Path | None = None,
            force: bool = False) -> PreparedData:
    """The prepared dataset of `cfg`, read from the cache when its entry is there and verifies.

    cache: the stage cache to use (a suite's); else one rooted at `cache_dir` (default cfg.cache_dir or
    runs/cache under the working directory). force: rebuild and replace the entry even when it exists.
    Raises DataError (bad or missing files) or ConfigError (bad settings); nothing partial is cached.
    """
    key = data_key(cfg)
    if cache is None:
        cache = StageCache(Path(cache_dir or cfg.cache_dir or DEFAULT_CACHE), force=[STAGE] if force else [])
    data, _ = cache.load_or_compute(STAGE, key, lambda tmp: compute_prepared(cfg, tmp, cache.path(STAGE, key)),
                                    save_prepared, load_prepared, meta={"dataset": cfg.dataset})
    return data


def compute_prepared(cfg: DataConfig, workdir: Path, final_dir: Path) -> PreparedData:
    """Load, validate and prepare `cfg`'s dataset. Side files (item images of synthetic and fashion-mnist-rec) are
    written into `workdir`, the cache entry being written, and named by their path under `final_dir`, where the
    entry will live."""
    ds, root, fp = _locate(cfg)
    if root is None:
        raw = synthetic.generate(cfg.synthetic)
        if cfg.synthetic.images:
            items = synthetic.render_images(raw.items, cfg.synthetic, workdir / "images", final_dir / "images")
            raw = RawData(raw.interactions, items, None, raw.source)
    else:
        raw = ds.load(cfg, root)
        if ds.write_images is not None:
            raw = ds.write_images(cfg, root, raw, workdir / "images", final_dir / "images")
    raw = validate(raw, on_duplicate=cfg.on_duplicate, on_unknown_item=cfg.on_unknown_item)
    return build_prepared(raw, cfg, fp)


def warn_if_one_label(inter: pl.DataFrame, cfg: DataConfig) -> None:
    """A DataWarning when every impression is a positive and data.negatives adds none (a click-only log such
    as MicroLens or a generic implicit log): AUC, GAUC and LogLoss are undefined on one label."""
    if cfg.negatives.kind == "none" and inter.height and int(inter["label"].cast(pl.Int64).min()) == 1:
        warnings.warn(DataWarning(
            f"{cfg.dataset}: every one of the {inter.height} impressions has label 1 and data.negatives.kind is "
            "\"none\", so AUC, GAUC and LogLoss are undefined; set data.negatives (e.g. "
            "{ kind = \"uniform\", ratio = 4 }, docs/data.md \"Sampled negatives\")"), stacklevel=2)


def _index(raw: RawData, kcore: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """log (user_idx, item_idx, ts, label[, rating]), items with item_idx, users with user_idx."""
    inter, items, users = raw.interactions, raw.items, raw.users
    if kcore > 1:
        inter = splits.kcore(inter, kcore)
        items = items.filter(pl.col("item_id").is_in(inter["item_id"].implode()))
        users = users.filter(pl.col("user_id").is_in(inter["user_id"].implode())) if users is not None else None
    user_ids = inter["user_id"] if users is None else pl.concat([inter["user_id"], users["user_id"]])
    umap = splits.natural_order(user_ids).to_frame("user_id").with_row_index("user_idx")
    imap = splits.natural_order(items["item_id"]).to_frame("item_id").with_row_index("item_idx")
    umap = umap.with_columns(pl.col("user_idx").cast(pl.Int32))
    imap = imap.with_columns(pl.col("item_idx").cast(pl.Int32))
    extra = [c for c in ("rating", "test_only") if c in inter.columns]
    log = (inter.join(umap, on="user_id").join(imap, on="item_id")
           .select("user_idx", "item_idx", "ts", "label", *extra))
    items = imap.join(items, on="item_id", maintain_order="left")
    users_out = umap if users is None else umap.join(users, on="user_id", how="left", maintain_order="left")
    return log, items, users_out


def build_prepared(raw: RawData, cfg: DataConfig, fp: str) -> PreparedData:
    """The pure part of `prepare` (no cache): canonical RawData -> PreparedData."""
    warn_if_one_label(raw.interactions, cfg)
    log, items, users = _index(raw, cfg.kcore)
    n_items = items.height
    log = _assign_split(log, cfg.split)
    cold = splits.pick_cold_items(log, n_items, cfg.split.cold_item_frac, cfg.split.seed)
    # the validation rows' own cold items: a second draw among the others (SplitConfig.val_cold_item_frac)
    val_cold = splits.pick_cold_items(log, n_items, cfg.split.val_cold_item_frac, cfg.split.seed, exclude=cold,
                                      stream=1)
    neg_cfg = cfg.negatives
    # what each user had seen and when, over every real row (cold ones too): never sampled as a negative
    seen = (negatives.SeenIndex(log["user_idx"].to_numpy(), log["item_idx"].to_numpy(), log["ts"].to_numpy(), n_items)
            if neg_cfg.kind != "none" else None)
    totals = (log.height, int(log["label"].cast(pl.Int64).sum()))
    is_cold = pl.Series(cold).gather(log["item_idx"])
    dropped = int((is_cold & (log["split"] != splits.TEST)).sum())
    log = log.filter(~is_cold | (log["split"] == splits.TEST))  # cold rows leave train/val, stay in test
    val_dropped = 0
    if val_cold.any():  # validation-cold rows leave train/test, stay in validation
        is_val_cold = pl.Series(val_cold).gather(log["item_idx"])
        val_dropped = int((is_val_cold & (log["split"] != splits.VAL)).sum())
        log = log.filter(~is_val_cold | (log["split"] == splits.VAL))
    if cfg.history_source == "all_rows":  # RecBole's sequential history (any label), for peer parity
        hist = build_history_recbole(log["user_idx"].to_numpy(), log["ts"].to_numpy(), log["item_idx"].to_numpy(),
                                     cfg.history_len)
    else:
        hist = build_history(log["user_idx"].to_numpy(), log["ts"].to_numpy(), log["item_idx"].to_numpy(),
                             log["label"].to_numpy(), cfg.history_len)
    log = log.with_columns(hist)
    cols = ["user_idx", "item_idx", "ts", "label", "hist_item_idx", *(["rating"] if "rating" in log.columns else [])]
    parts = {name: log.filter(pl.col("split") == code).select(cols)
             for name, code in (("train", splits.TRAIN), ("val", splits.VAL), ("test", splits.TEST))}
    train_count = np.bincount(parts["train"]["item_idx"].to_numpy(), minlength=n_items).astype(np.int32)
    neg_stats = None
    if seen is not None:  # train_count stays the real rows' count: sampled negatives make no item warm or popular
        parts, neg_stats = _add_negatives(parts, seen, train_count, cfg)
    items = _finish_items(items, cold, train_count, cfg.split.popularity_buckets)
    stats = _stats(raw, log, parts, items, (*totals, dropped), users.height)
    if neg_stats is not None:
        stats["negatives"] = neg_stats
    if val_cold.any():  # only then: the stats of a run without the draw stay as they were
        val_ids = pl.Series(np.flatnonzero(val_cold).astype(np.int32)).implode()
        stats |= {"val_cold_items_drawn": int(val_cold.sum()), "val_cold_rows_dropped_from_train_test": val_dropped,
                  "val_cold_drawn_val_rows": int(parts["val"]["item_idx"].is_in(val_ids).sum())}
    return PreparedData(**parts, items=items, users=users, stats=stats, fingerprint=fp, name=cfg.dataset)


def _assign_split(log: pl.DataFrame, cfg: SplitConfig) -> pl.DataFrame:
    """`splits.assign_split`, except that rows a loader marked `test_only` (KuaiRand's random-exposure log) all
    go to test and the other rows are split with test_frac = 0 (train and val only)."""
    if "test_only" not in log.columns:
        return splits.assign_split(log, cfg)
    fixed = log.filter(pl.col("test_only")).with_columns(pl.lit(splits.TEST, dtype=pl.Int8).alias("split"))
    rest = splits.assign_split(log.filter(~pl.col("test_only")), dataclasses.replace(cfg, test_frac=0.0))
    return pl.concat([rest, fixed.select(rest.columns)]).sort(["user_idx", "ts", "item_idx"]).drop("test_only")


def _add_negatives(parts: dict[str, pl.DataFrame], seen: negatives.SeenIndex, train_count: np.ndarray,
                   cfg: DataConfig) -> tuple[dict[str, pl.DataFrame], dict]:
    """Every split with its sampled negatives (benchmark/data/negatives.py) and what was drawn, for the stats."""
    neg = cfg.negatives
    pools = {"train": np.flatnonzero(train_count > 0), "val": np.arange(train_count.size),
             "test": np.arange(train_count.size)}
    out, stats = {}, {"kind": neg.kind, "ratio": neg.ratio, "seed": neg.seed,
                      **({"exponent": neg.exponent} if neg.kind == "popularity" else {})}
    for code, name in enumerate(("train", "val", "test")):
        pool = pools[name]
        cdf = negatives.pool_weights(pool, train_count, neg) if pool.size else None
        out[name], got = negatives.add_negatives(parts[name], pool, cdf, seen, neg, code)
        stats[f"{name}_negatives"], stats[f"{name}_short"] = got["negatives"], got["short"]
    return out, stats


def _finish_items(items: pl.DataFrame, drawn: np.ndarray, train_count: np.ndarray, buckets: int) -> pl.DataFrame:
    """The prepared item columns (benchmark/data/prepared.py). Cold = no training impression (the drawn cold
    items and any other item without train rows); warm = at least one; `cold_drawn` marks the seeded draw whose
    rows left train/val. Every dataset gets every column: a loader without image paths or categories leaves
    them null; one without years or genres (all but MovieLens) gets year "" and genres [] on every row, the
    same values as "unknown"."""
    for col in ("image_path", "category"):
        if col not in items.columns:
            items = items.with_columns(pl.lit(None, dtype=pl.Utf8).alias(col))
    if "year" not in items.columns:
        items = items.with_columns(pl.lit("").alias("year"))
    if "genres" not in items.columns:
        items = items.with_columns(pl.lit([], dtype=pl.List(pl.Utf8)).alias("genres"))
    return items.select(
        "item_idx", "item_id", pl.col("text").fill_null(""), "image_path", "category",
        pl.col("year").fill_null(""), pl.col("genres").fill_null([]).cast(pl.List(pl.Utf8)),
        pl.Series("is_cold", train_count == 0), pl.Series("cold_drawn", drawn),
        pl.Series("train_count", train_count, dtype=pl.Int32),
        pl.Series("pop_bucket", splits.popularity_buckets(train_count, buckets), dtype=pl.Int8))


def _stats(raw: RawData, log: pl.DataFrame, parts: dict[str, pl.DataFrame], items: pl.DataFrame,
           counts: tuple[int, int, int], n_users: int) -> dict:
    """impressions/positives count the log after dedup and k-core, before cold rows leave train/val.
    cold_items: items with no training impression (the report's cold slice); cold_items_drawn: the seeded draw
    among them whose rows were held out; warm_items: items with at least one training impression."""
    impressions, positives, dropped = counts
    train_users = parts["train"]["user_idx"].unique().implode()

    def cold_user_share(df: pl.DataFrame) -> float:
        return float((~df["user_idx"].is_in(train_users)).mean()) if df.height else 0.0

    cold_ids = items.filter(pl.col("is_cold"))["item_idx"].implode()
    drawn_ids = items.filter(pl.col("cold_drawn"))["item_idx"].implode()
    lens = log["hist_item_idx"].list.len()
    test_lens = parts["test"]["hist_item_idx"].list.len()
    inter = raw.interactions
    return {
        "users": n_users, "items": items.height,
        "impressions": impressions, "positives": positives,
        "raw_impressions": inter.height, "raw_positives": int(inter["label"].cast(pl.Int64).sum()),
        "train": parts["train"].height, "val": parts["val"].height, "test": parts["test"].height,
        "cold_items": int(items["is_cold"].sum()), "cold_items_drawn": int(items["cold_drawn"].sum()),
        "warm_items": int((~items["is_cold"]).sum()), "cold_rows_dropped_from_train_val": dropped,
        "cold_item_test_rows": int(parts["test"]["item_idx"].is_in(cold_ids).sum()),
        "cold_drawn_test_rows": int(parts["test"]["item_idx"].is_in(drawn_ids).sum()),
        "cold_user_share_val": cold_user_share(parts["val"]), "cold_user_share_test": cold_user_share(parts["test"]),
        "history_len_mean": float(lens.mean() or 0.0), "history_len_median": float(lens.median() or 0.0),
        "history_len_max": int(lens.max() or 0), "history_empty_share": float((lens == 0).mean() or 0.0),
        "test_history_len_mean": float(test_lens.mean() or 0.0) if test_lens.len() else 0.0,
    }
