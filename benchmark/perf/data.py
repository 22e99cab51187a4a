"""`qarm-bench perf data`: prepare the synthetic set at scale (default: the `large` preset, 1M items,
10M interactions) and report wall time per stage and peak memory (target < 8 GB).

Preparation runs in a child process so its peak RSS is its own (ru_maxrss of the children).
Side by side: the vectorised history builder against the per-row reference on a subsample.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
from pathlib import Path
from benchmark.data import DataConfig, SyntheticConfig
from benchmark.data.synthetic import generate
from benchmark.data.schema import validate
from benchmark.data.preparation import build_prepared, fingerprint
from benchmark.data.prepared import load_prepared, save_prepared

a = json.loads(sys.argv[1])
cfg = DataConfig(dataset="synthetic", synthetic=SyntheticConfig(size=a["size"], n_interactions=a["n"],
                 n_items=a["items"], n_users=a["users"], seed=a["seed"]))
t = {}
t0 = time.perf_counter(); raw = generate(cfg.synthetic); t["generate_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
raw = validate(raw, on_duplicate=cfg.on_duplicate, on_unknown_item=cfg.on_unknown_item)
t["validate_s"] = time.perf_counter() - t0
t0 = time.perf_counter(); fp = fingerprint(cfg, []); data = build_prepared(raw, cfg, fp)
t["split_history_s"] = time.perf_counter() - t0
where = Path(a["cache"]) / "synthetic"
where.mkdir(parents=True)
t0 = time.perf_counter(); save_prepared(data, where); t["cache_write_s"] = time.perf_counter() - t0
del data, raw
t0 = time.perf_counter(); back = load_prepared(where); t["cache_read_s"] = time.perf_counter() - t0
print(json.dumps({**t, "stats": back.stats}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", default="large", choices=("tiny", "small", "medium", "large"),
                        help="synthetic preset (default: large = 1M items, 10M interactions)")
    parser.add_argument("--interactions", type=int, default=0, help="override the preset's interactions")
    parser.add_argument("--items", type=int, default=0, help="override the preset's items")
    parser.add_argument("--users", type=int, default=0, help="override the preset's users")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--history-rows", type=int, default=20_000,
                        help="rows for the vectorised-vs-per-row history comparison")


def _history_side_by_side(rows: int) -> dict:
    import numpy as np

    from benchmark.data.history import build_history, build_history_slow

    rng = np.random.default_rng(0)
    user = np.sort(rng.integers(0, max(1, rows // 50), rows))
    ts, item, label = rng.integers(0, 10**6, rows), rng.integers(0, 10**4, rows), rng.integers(0, 2, rows)
    build_history(user[:100], ts[:100], item[:100], label[:100], 50)  # warm-up: pyarrow/polars first-call cost
    t0 = time.perf_counter()
    fast = build_history(user, ts, item, label, 50)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = build_history_slow(user, ts, item, label, 50)
    t_slow = time.perf_counter() - t0
    assert fast.to_list() == slow
    return {"history_rows": rows, "history_vectorised_s": t_fast, "history_per_row_s": t_slow,
            "history_speedup": t_slow / max(t_fast, 1e-9)}


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="qarm-perf-data-") as cache:
        a = {"size": args.size, "n": args.interactions, "items": args.items, "users": args.users,
             "seed": args.seed, "cache": cache}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(a)], capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return 1
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB (Linux)
    s = child.pop("stats")
    out = {"size": args.size, "users": s["users"], "items": s["items"], "impressions": s["impressions"],
           "train": s["train"], "val": s["val"], "test": s["test"], "history_len_mean": s["history_len_mean"],
           **child, "wall_s": wall, "peak_rss_gb": peak_gb, "target_peak_rss_gb": 8.0,
           "under_target": peak_gb < 8.0, **_history_side_by_side(args.history_rows)}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"synthetic[{args.size}]: {out['users']:,} users, {out['items']:,} items, {out['impressions']:,} impressions")
    for k, v in out.items():
        if k.endswith("_s") or k in ("peak_rss_gb", "history_speedup"):
            print(f"  {k:<24} {v:10.2f}")
    print(f"  peak RSS {peak_gb:.2f} GB (target < 8 GB): {'ok' if out['under_target'] else 'OVER'}")
    return 0
