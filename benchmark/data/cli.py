"""`qarm-bench data describe NAME` and `qarm-bench data export NAME --out DIR`.

DataError / ConfigError propagate to benchmark/cli.py, which prints them and exits 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.config.data import DataConfig, SplitConfig

if TYPE_CHECKING:

    from benchmark.data.prepared import PreparedData

SPLITS = ("per_user_temporal", "global_temporal", "leave_last_out")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="dataset: a registered loader (built in: movielens-100k, kuairand, generic, ...)")
    p.add_argument("--root", default="", help="folder of the raw files (default: the dataset's default)")
    p.add_argument("--split", choices=SPLITS, default=None, help="split protocol (default: the dataset's default)")
    p.add_argument("--cache-dir", default="", help="prepared-data cache root (default: runs/cache; entries go in <root>/data/)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    d = sub.add_parser("describe", help="sizes, split sizes, cold items/users and history lengths")
    _common(d)
    d.add_argument("--json", action="store_true", help="print one JSON object")
    e = sub.add_parser("export", help="write the exact split (train/val/test with labels) and the item text")
    _common(e)
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--format", choices=("recbole", "parquet"), default="parquet")
    e.add_argument("--history-len", type=int, default=0, metavar="T",
                   help="recbole only: add item_id_list:token_seq, RecBole's sequential history (the user's "
                        "<= T earlier rows of any label; for DIN with benchmark_filename). Default 0: none")


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
    from benchmark.data.export import export

    export(data, Path(args.out), args.format, history_len=args.history_len)
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
    if "negatives" in s:  # data.negatives: sampled label-0 rows, included in the split sizes above
        n = s["negatives"]
        rows.insert(-1, (f"sampled negatives ({n['kind']}, ratio {n['ratio']}, seed {n['seed']})",
                         f"{n['train_negatives']:,} / {n['val_negatives']:,} / {n['test_negatives']:,}"))
    print(f"{data.name}")
    for k, v in rows:
        print(f"  {k:<36} {v:>12,}" if isinstance(v, int) else f"  {k:<36} {v:>12}")
    return 0
