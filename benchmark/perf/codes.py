"""`qarm-bench perf codes`: code sets side by side on the same embeddings (issue 15): plain RQ-Kmeans, + TIGER's
dedup suffix, + an FSQ last level (QARM V2's Res-KmeansFSQ), balanced k-means (OneRec), balanced + FSQ. For each:
fit and encode time, collision rate, items per code (N / unique, and the item-weighted group size), per-level
utilisation and perplexity, neighbour HR@10 at every prefix depth, reconstruction MSE per level.

Embeddings: `--suite-dir runs/<suite>` reads a finished suite's cache (the aligned and frozen embeddings and the
prepared split; one cache entry of each), `--embeddings a.npy` any (N, d) matrix, otherwise a seeded synthetic
set (`perf quantize`'s: `--clusters` planted directions plus noise, unit norm). With `--suite-dir` it also reports
each tokenisation's token coverage on the test slice's cold items (qarm.quantize.tokenize.token_coverage) for
every code set of the aligned source.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.errors import QarmBenchError

SETS = ("rq_kmeans", "rq_kmeans+dedup", "rq_kmeans+fsq", "balanced", "balanced+fsq")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite-dir", type=Path, default=None,
                        help="a suite's runs folder (runs/<suite>): its aligned + frozen embeddings and split")
    parser.add_argument("--embeddings", type=Path, default=None, help="an (N, d) .npy matrix instead")
    parser.add_argument("--n", type=int, default=100_000, help="synthetic items (default 100,000)")
    parser.add_argument("--dim", type=int, default=64, help="synthetic embedding dim (default 64)")
    parser.add_argument("--clusters", type=int, default=4096, help="planted directions in the synthetic data")
    parser.add_argument("--levels", type=int, default=3, help="code levels L (default 3)")
    parser.add_argument("--codebook-size", type=int, default=64, help="codes per k-means level K (default 64)")
    parser.add_argument("--niter", type=int, default=25, help="k-means iterations per level (default 25)")
    parser.add_argument("--fsq-levels", default="auto",
                        help="FSQ bins per dim, e.g. 4,4,4 (default auto: 4s and a 2 whose product is K)")
    parser.add_argument("--balanced-iters", type=int, default=10, help="balanced rounds per level (default 10)")
    parser.add_argument("--sets", default=",".join(SETS), help=f"code sets to fit (default all: {','.join(SETS)})")
    parser.add_argument("--queries", type=int, default=10_000, help="neighbour HR query items (default 10,000)")
    parser.add_argument("--seed", type=int, default=0)


def fsq_levels_for(k: int) -> tuple[int, ...]:
    """Bins of 4 (and one 2) whose product is K, for K a power of two >= 2: an FSQ level as large as the k-means
    level it replaces."""
    if k < 2 or k & (k - 1):
        raise ValueError(f"--fsq-levels auto needs K a power of two, got K={k}; pass --fsq-levels explicitly")
    bits = k.bit_length() - 1
    return (4,) * (bits // 2) + ((2,) if bits % 2 else ())


def _fit(name: str, x: np.ndarray, args: argparse.Namespace, fsq: tuple[int, ...]) -> tuple[np.ndarray, Any,
                                                                                               dict[str, Any]]:
    """Fit one code set: (codes (N, L') int64, decoder or None, timings)."""
    from qarm.quantize import RQKmeans, add_dedup_level

    base = name.split("+")[0]
    kw = {"balanced": base == "balanced", "balanced_iters": args.balanced_iters}
    if name.endswith("+fsq"):
        kw.update(last_level="fsq", fsq_levels=fsq)
    rq = RQKmeans(levels=args.levels, codebook_size=args.codebook_size, niter=args.niter, seed=args.seed, **kw)
    t0 = time.perf_counter()
    rq.fit(x)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    codes = rq.encode(x)
    enc_s = time.perf_counter() - t0
    decoder = rq.decode
    if name.endswith("+dedup"):
        t0 = time.perf_counter()
        codes = add_dedup_level(codes)
        fit_s += time.perf_counter() - t0
        decoder = None
    rounds = [s["balanced_rounds"] for s in rq.fit_stats_ if "balanced_rounds" in s]
    return codes, decoder, {"fit_seconds": fit_s, "encode_seconds": enc_s, "balanced_rounds": rounds}


def _row(name: str, x: np.ndarray, args: argparse.Namespace, fsq: tuple[int, ...]) -> tuple[np.ndarray, dict]:
    from qarm.diagnostics import code_diagnostics

    codes, decoder, times = _fit(name, x, args, fsq)
    sizes = [int(v) + 1 for v in codes.max(0)] if name.endswith("+dedup") else None
    if sizes is None:
        sizes = [args.codebook_size] * (args.levels - name.endswith("+fsq")) + \
                ([int(np.prod(fsq))] if name.endswith("+fsq") else [])
    d = code_diagnostics(x, codes, codebook_size=sizes, decoder=decoder, neighbour_queries=args.queries,
                         seed=args.seed)
    return codes, {"set": name, **times, "vocab": sizes, "collision_rate": d.collision_rate,
                   "duplicate_rate": d.duplicate_rate,
                   "n_unique_codes": d.n_unique_codes, "mean_items_per_code": d.mean_items_per_code,
                   "mean_code_group_size": d.mean_code_group_size, "max_items_per_code": d.max_items_per_code,
                   "utilisation": list(d.utilisation), "perplexity": list(d.perplexity),
                   "hr_at_10_by_depth": list(d.neighbour_hr or ()), "recon_mse_by_level": list(d.reconstruction_mse or ()),
                   "collision_rate_by_depth": list(d.collision_rate_by_depth)}


def _suite_inputs(suite_dir: Path) -> dict[str, Any]:
    """Aligned + frozen embeddings and (train items, cold test items) masks from a finished suite's cache."""
    from benchmark.itemside.compute import load_align, load_data, load_frozen

    def one(stage: str) -> Path:
        entries = sorted(p for p in (suite_dir / "artifacts" / stage).glob("*") if (p / "_SUCCESS").is_file())
        if len(entries) != 1:
            raise QarmBenchError(f"{suite_dir}/artifacts/{stage}: expected one finished cache entry, found "
                                 f"{len(entries)}; pass --embeddings instead")
        return entries[0]

    data = load_data(one("data"))
    items = data.items
    train = items["train_count"].to_numpy() > 0
    in_test = np.zeros(items.height, dtype=bool)
    in_test[data.test["item_idx"].to_numpy()] = True
    cold_test = items["is_cold"].to_numpy() & in_test
    return {"sources": {"aligned": load_align(one("align")).embeddings,
                        "frozen": load_frozen(one("frozen")).frozen_embeddings()},
            "train_items": train, "cold_test_items": cold_test, "name": data.name}


def _coverage(codes: np.ndarray, sizes: list[int], train: np.ndarray, query: np.ndarray, seed: int) -> dict:
    from qarm.quantize.config import TOKEN_SCHEMES, TokenizeConfig
    from qarm.quantize.tokenize import token_coverage, tokenize_codes

    out = {}
    for scheme in TOKEN_SCHEMES:
        if scheme == "bigram" and codes.shape[1] < 2:
            continue
        tables = tokenize_codes(codes, sizes, train, TokenizeConfig(scheme=scheme, seed=seed))
        cov = token_coverage(tables, train, query)
        out[scheme] = {**dataclasses.asdict(cov), "rows": [t.rows for t in tables.tables],
                       "spm_trained": tables.spm_trained}
    return out


def run(args: argparse.Namespace) -> int:
    import faiss

    try:
        fsq = fsq_levels_for(args.codebook_size) if args.fsq_levels == "auto" else \
            tuple(int(v) for v in args.fsq_levels.split(","))
    except ValueError as e:
        raise QarmBenchError(f"--fsq-levels: {e}") from None
    names = [s for s in args.sets.split(",") if s]
    unknown = [s for s in names if s not in SETS]
    if unknown:
        raise QarmBenchError(f"--sets: unknown {unknown}; expected some of {','.join(SETS)}")
    suite = _suite_inputs(args.suite_dir) if args.suite_dir else None
    if suite:
        sources, data_name = suite["sources"], suite["name"]
    elif args.embeddings:
        sources, data_name = {"embeddings": np.load(args.embeddings).astype(np.float32)}, str(args.embeddings)
    else:
        from benchmark.perf.quantize import synthetic_embeddings

        sources = {"synthetic": synthetic_embeddings(args.n, args.dim, args.clusters, args.seed)}
        data_name = f"synthetic n={args.n} d={args.dim} clusters={args.clusters}"
    out: dict[str, Any] = {"benchmark": "codes", "data": data_name, "levels": args.levels,
                           "codebook_size": args.codebook_size, "niter": args.niter, "fsq_levels": list(fsq),
                           "balanced_iters": args.balanced_iters, "faiss_threads": faiss.omp_get_max_threads(),
                           "sources": {}}
    for src, x in sources.items():
        rows, cover = [], {}
        for name in names:
            codes, row = _row(name, x, args, fsq)
            rows.append(row)
            if suite and src == "aligned":
                cover[name] = _coverage(codes, row["vocab"], suite["train_items"], suite["cold_test_items"],
                                        args.seed)
        out["sources"][src] = {"n": int(x.shape[0]), "dim": int(x.shape[1]), "sets": rows, "token_coverage": cover}
    if suite:
        out["train_items"] = int(suite["train_items"].sum())
        out["cold_test_items"] = int(suite["cold_test_items"].sum())
    if args.json:
        print(json.dumps(out))
        return 0
    _print(out)
    return 0


def _fmt(v: list[float], spec: str = ".2f") -> str:
    return "/".join(format(x, spec) for x in v)


def _print(out: dict[str, Any]) -> None:
    print(f"perf codes: {out['data']}  L={out['levels']} K={out['codebook_size']} niter={out['niter']} "
          f"fsq={out['fsq_levels']} balanced_iters={out['balanced_iters']}")
    for src, res in out["sources"].items():
        floor = res["sets"][0]["duplicate_rate"] if res["sets"] else 0.0
        print(f"\n[{src}] N={res['n']:,} d={res['dim']}; items with a bitwise-duplicate embedding (collision "
              f"floor): {floor:.4f}")
        print(f"  {'set':<16} {'fit s':>7} {'collide':>8} {'N/uniq':>7} {'group':>7} {'max':>5} "
              f"{'utilisation':>17} {'perplexity':>20} {'HR@10 by depth':>20} {'recon MSE':>17}")
        for r in res["sets"]:
            print(f"  {r['set']:<16} {r['fit_seconds']:7.2f} {r['collision_rate']:8.4f} "
                  f"{r['mean_items_per_code']:7.3f} {r['mean_code_group_size']:7.2f} {r['max_items_per_code']:5d} "
                  f"{_fmt(r['utilisation']):>17} {_fmt(r['perplexity'], '.1f'):>20} "
                  f"{_fmt(r['hr_at_10_by_depth'], '.3f'):>20} {_fmt(r['recon_mse_by_level'], '.4f'):>17}")
        for name, cov in res["token_coverage"].items():
            print(f"  token coverage of cold test items, {name} codes "
                  f"({out['cold_test_items']} items; train items {out['train_items']}):")
            for scheme, c in cov.items():
                per = ", ".join(f"{t} {'-' if v is None else format(v, '.3f')} ({rows} rows)"
                                for t, v, rows in zip(c["tables"], c["coverage"], c["rows"]))
                overall = "-" if c["overall"] is None else format(c["overall"], ".3f")
                print(f"    {scheme:<13} overall {overall}: {per}")
