"""`qarm-bench data describe NAME` and `qarm-bench data export NAME --out DIR`.

DataError / ConfigError propagate to benchmark/cli.py, which prints them and exits 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.data.config import DATASETS, DataConfig, SplitConfig
from benchmark.errors import DataError

if TYPE_CHECKING:
    import polars as pl

    from benchmark.data.prepared import PreparedData

SPLITS = ("per_user_temporal", "global_temporal", "leave_last_out")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help=f"dataset: one of {', '.join(sorted(DATASETS))}")
    p.add_argument("--root", default="", help="folder of the raw files (default: the dataset's default)")
    p.add_argument("--split", choices=SPLITS, default=None, help="split protocol (default: the dataset's default)")
    p.add_argument("--cache-dir", default="", help="prepared-data cache (default: runs/cache/data)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    d = sub.add_parser("describe", help="sizes, split sizes, cold items/users and history lengths")
    _common(d)
    d.add_argument("--json", action="store_true", help="print one JSON object")
    e = sub.add_parser("export", help="write the exact split (train/val/test with labels) and the item text")
    _common(e)
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--format", choices=("recbole", "parquet"), default="parquet")


def config_from_args(args: argparse.Namespace) -> DataConfig:
    from benchmark.data import registry

    ds = registry.get(args.name)
    kind = args.split or registry.load_card(ds).get("default_split", "per_user_temporal")
    return DataConfig(dataset=args.name, root=args.root, split=SplitConfig(kind=kind), cache_dir=args.cache_dir)


def run(args: argparse.Namespace) -> int:
    from benchmark.data.preparation import prepare

    data = prepare(config_from_args(args))
    if args.data_command == "describe":
        return _describe(data, args.json)
    export(data, Path(args.out), args.format)
    print(f"wrote {args.format} split of {data.name} to {args.out}")
    return 0


def _describe(data: PreparedData, as_json: bool) -> int:
    s = {"name": data.name, "fingerprint": data.fingerprint, **data.stats}
    if as_json:
        print(json.dumps(s, sort_keys=True))
        return 0
    rows = [("users", s["users"]), ("items", s["items"]), ("impressions", s["impressions"]),
            ("positives", s["positives"]), ("train", s["train"]), ("val", s["val"]), ("test", s["test"]),
            ("cold items (no training impression)", s["cold_items"]),
            ("  of which the seeded cold draw", s["cold_items_drawn"]),
            ("warm items (>= 1 training impression)", s["warm_items"]),
            ("cold-user share of val", f"{s['cold_user_share_val']:.1%}"),
            ("cold-user share of test", f"{s['cold_user_share_test']:.1%}"),
            ("history length mean / median / max",
             f"{s['history_len_mean']:.1f} / {s['history_len_median']:.0f} / {s['history_len_max']}"),
            ("fingerprint", data.fingerprint[:16])]
    print(f"{data.name}")
    for k, v in rows:
        print(f"  {k:<36} {v:>12,}" if isinstance(v, int) else f"  {k:<36} {v:>12}")
    return 0


def _with_ids(data: PreparedData, df: pl.DataFrame) -> pl.DataFrame:
    return (df.join(data.users.select("user_idx", "user_id"), on="user_idx", maintain_order="left")
            .join(data.items.select("item_idx", "item_id"), on="item_idx", maintain_order="left"))


def export(data: PreparedData, out: Path, fmt: str) -> None:
    import polars as pl  # noqa: F811

    """parquet: {train,val,test}.parquet (ids, idx, ts, label[, rating], history), items, users, stats.json.
    recbole: <name>.{train,valid,test}.inter and <name>.item atomic files (RecBole's
    `benchmark_filename: [train, valid, test]`), raw ids as tokens; label as a float field."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{out}: cannot create the output folder ({e.strerror})") from None
    splits = {"train": data.train, "val": data.val, "test": data.test}
    if fmt == "parquet":
        for name, df in splits.items():
            _with_ids(data, df).write_parquet(out / f"{name}.parquet")
        data.items.write_parquet(out / "items.parquet")
        data.users.write_parquet(out / "users.parquet")
        (out / "stats.json").write_text(json.dumps({"name": data.name, "fingerprint": data.fingerprint,
                                                    **data.stats}, indent=1, sort_keys=True))
        return
    for name, df in splits.items():
        cols = [pl.col("user_id").alias("user_id:token"), pl.col("item_id").alias("item_id:token"),
                pl.col("ts").alias("timestamp:float"), pl.col("label").cast(pl.Float32).alias("label:float")]
        if "rating" in df.columns:
            cols.append(pl.col("rating").alias("rating:float"))
        suffix = {"val": "valid"}.get(name, name)
        _with_ids(data, df).select(cols).write_csv(out / f"{data.name}.{suffix}.inter", separator="\t",
                                                   quote_style="never")
    clean = pl.col("text").str.replace_all(r"[\t\r\n]+", " ")  # atomic files are tab/line delimited
    data.items.select(pl.col("item_id").alias("item_id:token"), clean.alias("text:token_seq")).write_csv(
        out / f"{data.name}.item", separator="\t", quote_style="never")
