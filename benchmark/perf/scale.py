"""`qarm-bench perf scale`: the synthetic-scale suite at several sizes, wall time and peak memory per stage.

    qarm-bench perf scale --interactions 1e6,3e6,1e7 [--models dlrm,din,sim] [--variants ...] [--out DIR] [--json]

For each size N the suite `--config` (default benchmark/configs/synthetic-scale.toml: synthetic content vectors,
1 seed, 1 epoch) is loaded with data.synthetic.n_interactions = N, n_users = N / --interactions-per-user and
n_items = N / --interactions-per-item (density held constant, so every stage's input grows with N), and run
entry by entry, each in its OWN child process (`--isolation process`, the default):

    data, pairs (U2I + Swing), frozen, align, codes/<set> ...   load the upstream entries from the size's stage
                                                                cache, compute, save (as `qarm-bench run` does)
    rank/<model>/<variant>                                      load the whole item side (the state a suite
                                                                process trains in), train and score the cell

Measured per entry: compute wall seconds (inside the child, after imports and loading its inputs), load seconds,
the child's wall and CPU seconds (os.wait4 rusage), its peak RSS (ru_maxrss of that child alone), and the 1-min
load average around it. A child past --timeout-min is killed and reported as a timeout (its peak so far is kept);
entries downstream of a failed item-side entry are skipped. A `baseline` child measures the RSS of the imports
alone (PRELOAD: python, torch, torchrec, faiss, qarm; every child imports them before its clock starts).
`--isolation none` runs everything in this process (peaks are then the
process's running high-water mark): the smoke test's mode.

Results accumulate in --out/scale.json (a rerun of a size replaces that size's rows), with a markdown table
(scale.md) and a log-log plot (scale.png) rewritten after every size (benchmark/perf/scale_report.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CHILD = "import sys; from benchmark.perf.scale import child_main; sys.exit(child_main(sys.argv[1]))"
# Imported by every child before its clock starts, so compute times hold no import cost.
PRELOAD = ("torch", "torchrec", "faiss", "scipy.sparse", "qarm.pairs.mining", "qarm.alignment.train",
           "qarm.quantize.rq_kmeans", "qarm.quantize.rq_vae", "qarm.diagnostics", "benchmark.cells.train",
           "benchmark.engine.suite", "benchmark.itemside.stages")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="synthetic-scale", help="suite to scale (default synthetic-scale)")
    parser.add_argument("--interactions", default="1e6,3e6,1e7",
                        help="comma-separated sizes, e.g. 1e6,3e6,1e7 (default)")
    parser.add_argument("--interactions-per-user", type=float, default=20.0, help="n_users = N / this (default 20)")
    parser.add_argument("--interactions-per-item", type=float, default=50.0, help="n_items = N / this (default 50)")
    parser.add_argument("--models", default="", help="comma-separated models (default: the suite's)")
    parser.add_argument("--variants", default="", help="comma-separated variants (default: the suite's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override, as `qarm-bench run --set` (repeatable)")
    parser.add_argument("--out", default="runs/perf-scale", help="results folder: scale.json, scale.md, scale.png")
    parser.add_argument("--workdir", default="", help="stage caches, one per size (default: <out>/work)")
    parser.add_argument("--isolation", choices=("process", "none"), default="process",
                        help="each entry in its own child process (default), or all in this one (smoke tests)")
    parser.add_argument("--timeout-min", type=float, default=60.0, help="kill an entry after this long (default 60)")
    parser.add_argument("--keep", action="store_true", help="keep each size's stage cache (default: removed)")
    parser.add_argument("--skip-rank-over", type=float, default=0.0,
                        help="models din,sim are not run above this many interactions (0 = no limit)")
    parser.add_argument("--item-side-only-over", type=float, default=0.0,
                        help="no ranker cell is run above this many interactions: the item side only (0 = no limit)")


def parse_sizes(text: str) -> list[int]:
    """"1e6,3e6,1e7" -> [1000000, 3000000, 10000000] (integers or floats in any notation)."""
    try:
        sizes = [int(float(t)) for t in text.split(",") if t.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        from benchmark.core.errors import ConfigError

        raise ConfigError(f"--interactions {text!r}: expected comma-separated positive sizes, e.g. 1e6,3e6,1e7")
    return sorted(set(sizes))


def size_overrides(args: argparse.Namespace, n: int, workdir: Path) -> list[str]:
    """The --set list that makes the suite of size n (its own runs_dir, so its own stage cache)."""
    out = [f"data.synthetic.n_interactions={n}",
           f"data.synthetic.n_users={max(1, round(n / args.interactions_per_user))}",
           f"data.synthetic.n_items={max(2, round(n / args.interactions_per_item))}",
           f"suite.runs_dir={workdir / f'n{n}'}"]
    for key, value in (("models", args.models), ("variants", args.variants)):
        if value:
            out.append(f"suite.{key}=" + json.dumps([v.strip() for v in value.split(",") if v.strip()]))
    return [*out, *args.overrides]


# ---- the child's side -------------------------------------------------------------------------------------


def _peak_gb_self() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """One entry of the suite, in this process: {"kind": "item", "stage", "instance"} | {"kind": "cell",
    "variant", "model", "seed"} | {"kind": "baseline"}, with "config" and "overrides". Returns its figures."""
    import importlib

    for module in PRELOAD:  # outside the timed part; the baseline child's peak is what they cost
        importlib.import_module(module)
    if task["kind"] == "baseline":
        return {"compute_s": 0.0, "load_s": 0.0, "detail": "imports only (python, torch, torchrec, faiss, qarm)"}
    import torch

    from benchmark.config.suite import load_config
    from benchmark.core.cache import StageCache
    from benchmark.core.device import resolve_device

    cfg = load_config(task["config"], task["overrides"])
    torch.set_num_threads(cfg.threads)
    cache = StageCache(cfg.suite_dir / "artifacts")
    device = resolve_device(cfg.suite.device)  # once per child process
    return _item(cfg, cache, task, device) if task["kind"] == "item" else _cell(cfg, cache, task, device)


def _item(cfg: Any, cache: Any, task: dict[str, Any], device: Any) -> dict[str, Any]:
    from benchmark.data.preparation import data_key
    from benchmark.engine.plan import replicate_seeds
    from benchmark.itemside import stages
    from benchmark.itemside.runner import run_entry

    rseed = replicate_seeds(cfg)[0]
    keys = stages.item_side_keys(cfg, data_key(cfg.data), rseed)
    stage, inst = stages.BY_NAME[task["stage"]], task["instance"]
    t0 = time.perf_counter()
    done = {}
    for up in stage.inputs_of(inst):
        up_stage = stages.BY_NAME[up]
        assert up_stage.load is not None
        done[up] = up_stage.load(cache.path(up, keys.key(up)))
    t1 = time.perf_counter()
    artifact, cached = run_entry(cfg, cache, rseed, stage, inst, keys.key(stage.name, inst), done,
                                 device=device, progress=False)
    t2 = time.perf_counter()
    assert stage.describe is not None
    return {"load_s": t1 - t0, "compute_s": t2 - t1, "cached": cached, "detail": stage.describe(artifact),
            **_item_facts(stage.name, artifact, cfg)}


def _item_facts(stage: str, artifact: Any, cfg: Any) -> dict[str, Any]:
    """Counts worth a column: the data's shape, the pairs mined, the Swing users skipped by the degree cap."""
    if stage == "data":
        s = artifact.stats
        return {"facts": {k: s[k] for k in ("users", "items", "impressions", "positives", "train", "val", "test",
                                            "history_len_mean")}}
    if stage == "pairs":
        return {"facts": {"pairs": artifact.stats.n_pairs, **{f"pairs_{k}": v for k, v in
                                                               artifact.stats.pairs_per_source.items()}}}
    return {}


def _cell(cfg: Any, cache: Any, task: dict[str, Any], device: Any) -> dict[str, Any]:
    from benchmark.engine.cell import train_or_load
    from benchmark.engine.plan import replicate_seed
    from benchmark.engine.suite import SuiteRun

    run = SuiteRun(cfg, progress=False, cache=cache, device=device)
    t0 = time.perf_counter()
    run.item_side()
    t1 = time.perf_counter()
    record, cached = train_or_load(cfg, cache, run.sides[replicate_seed(cfg, task["seed"])], task["variant"],
                                   task["model"], task["seed"], device=run.device)
    t2 = time.perf_counter()
    h = record.history[0] if record.history else None
    return {"load_s": t1 - t0, "compute_s": t2 - t1, "cached": cached,
            "detail": f"test AUC {record.test['all']['auc']:.4f}",
            "facts": {"epoch_s": h.seconds if h else None, "samples_per_s": h.samples_per_s if h else None,
                      "epochs": len(record.history), "test_auc": record.test["all"]["auc"]}}


def child_main(payload: str) -> int:
    """Entry point of a child process: run one task, print its figures as one JSON line."""
    out = run_task(json.loads(payload))
    print(json.dumps({**out, "peak_rss_self_gb": _peak_gb_self()}, default=float))
    return 0


# ---- the parent's side ------------------------------------------------------------------------------------


def _in_child(task: dict[str, Any], log: Path, timeout_s: float) -> dict[str, Any]:
    """Run `task` in a child process; wall, CPU and peak RSS from os.wait4 (that child alone)."""
    load0 = os.getloadavg()[0]
    out_path = log.with_suffix(".out")
    t0 = time.perf_counter()
    with open(out_path, "w") as out, open(log, "a") as err:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(task)], stdout=out, stderr=err)
        status, ru, timed_out = 0, None, False
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout_s:
                proc.kill()
                _, status, ru = os.wait4(proc.pid, 0)
                timed_out = True
                break
            time.sleep(0.5)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_gb": ru.ru_maxrss / 2**20,
                           "load_avg": (load0 + os.getloadavg()[0]) / 2}
    lines = out_path.read_text().strip().splitlines()
    if timed_out:
        return {**row, "status": "timeout"}
    if proc.returncode != 0 or not lines:
        return {**row, "status": f"error (exit {proc.returncode}; see {log})"}
    return {**row, **json.loads(lines[-1]), "status": "ok"}


def _in_process(task: dict[str, Any]) -> dict[str, Any]:
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        out = run_task(task)
        status = "ok"
    except Exception as e:  # noqa: BLE001 - reported as that entry's status, the others still run
        out, status = {}, f"error ({type(e).__name__}: {e})"
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "peak_rss_gb": _peak_gb_self(),
            "load_avg": (load0 + os.getloadavg()[0]) / 2, **out, "status": status}


def tasks_of(cfg: Any, args: argparse.Namespace, n: int) -> list[tuple[str, dict[str, Any]]]:
    """(label, task) for every entry of the suite of size n, in run order."""
    from benchmark.engine.plan import cells_of
    from benchmark.itemside.stages import ITEM_SIDE

    out: list[tuple[str, dict[str, Any]]] = [("baseline", {"kind": "baseline"})]
    for stage in ITEM_SIDE:
        for inst in stage.instances(cfg):
            label = f"{stage.name}/{inst}" if inst else stage.name
            out.append((label, {"kind": "item", "stage": stage.name, "instance": inst}))
    for variant, model, seed in cells_of(cfg):
        if args.item_side_only_over and n > args.item_side_only_over:
            break
        if args.skip_rank_over and model != "dlrm" and n > args.skip_rank_over:
            continue
        out.append((f"rank/{model}/{variant}", {"kind": "cell", "variant": variant, "model": model, "seed": seed}))
    return out


def measure_size(args: argparse.Namespace, n: int, workdir: Path) -> list[dict[str, Any]]:
    """Every entry of size n, one after another; returns one row per entry."""
    from benchmark.config.suite import load_config

    overrides = size_overrides(args, n, workdir)
    cfg = load_config(args.config, overrides)
    size_dir = workdir / f"n{n}"
    if size_dir.exists():
        shutil.rmtree(size_dir)  # a fresh cache: every entry computes, none is read back
    size_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    failed = False
    for label, task in tasks_of(cfg, args, n):
        task = {**task, "config": args.config, "overrides": overrides}
        base = {"interactions": n, "entry": label, "stage": label.split("/")[0]}
        if failed and task["kind"] != "baseline":
            rows.append({**base, "status": "skipped (an upstream entry failed)"})
            continue
        _say(f"[scale n={n:,}] {label} ...")
        if args.isolation == "process":
            row = _in_child(task, size_dir / f"{label.replace('/', '.')}.log", args.timeout_min * 60)
        else:
            row = _in_process(task)
        rows.append({**base, **row})
        _say(f"[scale n={n:,}] {label}: {row['status']}, compute {row.get('compute_s', float('nan')):.1f}s, "
             f"wall {row['wall_s']:.1f}s, peak {row['peak_rss_gb']:.2f} GB  {row.get('detail', '')}")
        failed = failed or (row["status"] != "ok" and task["kind"] == "item")
    if not args.keep:
        shutil.rmtree(size_dir / "artifacts", ignore_errors=True)
    return rows


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """The machine the figures come from: cores, memory, CPU model, python, torch threads."""
    model = ""
    with contextlib.suppress(OSError, StopIteration):
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(mem_gb, 1), "python": sys.version.split()[0]}


def run(args: argparse.Namespace) -> int:
    from benchmark.perf.scale_report import load_results, write_outputs

    out_dir = Path(args.out)
    workdir = Path(args.workdir) if args.workdir else out_dir / "work"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = load_results(out_dir / "scale.json")
    for n in parse_sizes(args.interactions):
        rows = measure_size(args, n, workdir)
        results["rows"] = [r for r in results["rows"] if r["interactions"] != n] + rows
        results["runs"] = [*results["runs"], {"interactions": n, "argv": sys.argv[1:], "machine": machine(),
                                              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}]
        write_outputs(results, out_dir)
    if args.json:
        print(json.dumps(results, default=float))
    else:
        print((out_dir / "scale.md").read_text())
    return 1 if any(r["status"].startswith("error") for r in results["rows"]) else 0  # timeouts are figures
