"""`qarm-bench run`: one invocation of a suite. SuiteRun orchestrates; each step is someone else's:

    item side      benchmark.itemside.runner.run_item_side       (one per replicate seed; typed ItemSide)
    its record     benchmark.itemside.summary.item_side_record   (pair stats, alignment, code sets, tokens)
    cells          benchmark.engine.cell.train_or_load              (here, or in worker processes: run.pool)
    MLflow         benchmark.tracking.store + benchmark.engine.logs (parent run, one child run per cell)
    report         benchmark.report.write.write_report           (statistics, tables, plots, HTML)

A rerun skips finished stages and cells (StageCache); the MLflow parent run of every invocation still gets a
child run per cell (tagged cached=true when its result came from the cache), so each invocation's run tree is
complete. The manifest `runs/<suite>/results.json` (benchmark.core.records.SuiteResults) feeds the report.
The device and the World are resolved once, by whoever starts the run, and handed down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import sys
from typing import Any

from benchmark.cells.plan import plan_cell
from benchmark.config.suite import SuiteConfig, sweep_configs
from benchmark.core import __version__
from benchmark.core.cache import StageCache, write_json
from benchmark.core.configlib import canonical_json, flatten, stable_hash, to_plain
from benchmark.core.records import CellRecord, ItemSideRecord, Provenance, SuiteResults, from_json, to_json
from benchmark.core.world import World
from benchmark.engine.plan import cells_of, replicate_seed, replicate_seeds
from benchmark.itemside.runner import ItemSide
from benchmark.itemside.stages import check_force, downstream_closure


def say(msg: str) -> None:
    """A status line on stderr that does not tear an active progress bar."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


class SuiteRun:
    """One invocation: computes (or loads) every stage, trains missing cells, logs, reports.

    device: the torch.device to compute on (default: resolved from suite.device when the run starts); world:
    this process's place among the ranks (default: one process)."""

    def __init__(self, cfg: SuiteConfig, force: list[str] | tuple[str, ...] = (), progress: bool = True,
                 label: str = "", cache: StageCache | None = None, world: World | None = None,
                 device: Any = None) -> None:
        check_force(force)
        self.cfg = cfg
        self.progress = progress
        self.label = label  # "key=value" of an ablation sweep; its report goes to runs/<suite>/sweep/<label>/
        self.suite_dir = cfg.suite_dir / "sweep" / label if label else cfg.suite_dir
        # one cache per suite, shared by all values of a sweep (each forced entry recomputes once)
        self.cache = cache or StageCache(cfg.suite_dir / "artifacts", force=downstream_closure(force))
        self.config_hash = stable_hash(cfg)
        self.world = world or World()
        self.device = device
        self.sides: dict[int, ItemSide] = {}

    def run(self) -> SuiteResults:
        """Take the suite's lock (one process per suite; before anything is written), then run."""
        with suite_lock(self.cfg.suite_dir, self.world):
            return self._run()

    def item_side(self) -> None:
        """Every replicate's item side (data, pairs, frozen, align, code sets), computed or loaded."""
        from benchmark.data.preparation import data_key
        from benchmark.itemside.runner import run_item_side
        from benchmark.itemside.stages import item_side_keys

        self.resolve_device()
        dkey = data_key(self.cfg.data)
        data = None
        for rseed in replicate_seeds(self.cfg):
            side = run_item_side(self.cfg, self.cache, item_side_keys(self.cfg, dkey, rseed), device=self.device,
                                 world=self.world, progress=self.progress, data=data)
            data = side.data
            self.sides[rseed] = side

    def _run(self) -> SuiteResults:
        import torch

        from benchmark.engine.logs import log_item_side, log_stage_keys
        from benchmark.itemside.summary import item_side_record
        from benchmark.tracking.store import NullTracker, Tracker, describe_reaped

        cfg, main = self.cfg, self.world.is_main  # other ranks train with rank 0 but log and write nothing
        torch.set_num_threads(cfg.threads)
        self.resolve_device()
        tracker = Tracker.for_suite(cfg.suite.name, cfg.suite.tracking_uri, cfg.suite.runs_dir) if main \
            else NullTracker()
        tracker.check()  # an unreachable store is reported before any training
        for line in describe_reaped(tracker.reap_dead_runs()):  # runs of dead processes -> KILLED
            say(f"[reap]   {line}")
        self.suite_dir.mkdir(parents=True, exist_ok=True)
        removed = self.cache.clean_partial() if main else 0
        self.world.barrier()
        if removed:
            say(f"[resume] removed {removed} partial stage folder(s) left by an interrupted run")
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        run_name = f"{cfg.suite.name} {self.label} {started}" if self.label else f"{cfg.suite.name} {started}"
        tags = {"config_hash": self.config_hash, "suite": cfg.suite.name, "sweep": self.label,
                "device": str(self.device), "world_size": self.world.size}
        with tracker.parent_run(run_name, params=flatten(cfg), tags=tags) as parent:
            parent.log_text(canonical_json(cfg), "config/resolved.json")
            self.item_side()
            first = self.sides[replicate_seeds(cfg)[0]].keys
            log_stage_keys(parent, {s: self.sides[s].keys.flat() for s in replicate_seeds(cfg)})
            parent.set_tags({"dataset_fingerprint": first.key("data")})
            replicates = tuple(item_side_record(cfg, self.sides[s]) for s in replicate_seeds(cfg))
            log_item_side(parent, self.sides[replicates[0].seed].data.stats, replicates)
            cells = self._run_cells(tracker)
            results = self._results(replicates, cells, started)
            if not main:
                return results
            md = self._report(results, parent)
        print(md)
        say(f"Done. Report: {self.suite_dir / 'report.md'}  Plots: {self.suite_dir / 'plots'}\n"
            f"MLflow: {tracker.tracking_uri} (experiment '{cfg.suite.name}'); open it with `qarm-bench ui` "
            f"(http://127.0.0.1:5000)")
        return results

    def resolve_device(self) -> Any:
        """The run's torch.device: the one handed in, else suite.device resolved here, once (a CUDA device on a
        machine without one fails here)."""
        if self.device is None:
            from benchmark.core.device import resolve_device

            self.device = resolve_device(self.cfg.suite.device)
        return self.device

    def _pending(self) -> list[tuple[str, str, int]]:
        """The cells whose results are not cached (they train)."""
        return [(v, m, s) for v, m, s in cells_of(self.cfg)
                if not self.cache.done("rank", plan_cell(self.cfg, v, m, s, self._side(s).keys).key)]

    def _side(self, seed: int) -> ItemSide:
        return self.sides[replicate_seed(self.cfg, seed)]

    def _run_cells(self, tracker: Any) -> list[CellRecord]:
        """Every cell, in order, each in its MLflow child run; uncached cells train in `cfg.workers` worker
        processes when there are several (benchmark.engine.pool), else here with live per-epoch metrics."""
        from tqdm import tqdm

        from benchmark.engine.cell import train_or_load
        from benchmark.engine.logs import cell_run_meta, epoch_logger, log_cell

        pending = self._pending()
        pool_cm: Any = contextlib.nullcontext()
        # worker processes are a CPU engine: under torchrun every rank trains every cell with the others, and a
        # GPU is shared by one process
        workers = self.cfg.workers if not self.world.active and self.device.type == "cpu" else 1
        if workers > 1 and len(pending) > 1:
            from benchmark.engine.pool import CellPool

            say(f"[cells]  {len(pending)} to train in {min(workers, len(pending))} worker processes "
                f"x {self.cfg.threads} thread(s)")
            pool_cm = CellPool(min(workers, len(pending)), self.cfg.threads)
        results = []
        with pool_cm as pool:
            futures: dict[tuple[str, str, int], Any] = {}
            if pool is not None:
                cfg_json = canonical_json(self.cfg)
                futures = {c: pool.submit(cfg_json, self.cache.root, self.cache.forced, *c) for c in pending}
            bar = tqdm(cells_of(self.cfg), desc="cells", unit="cell", disable=not self.progress, file=sys.stderr,
                       dynamic_ncols=True)
            for variant, model, seed in bar:
                bar.set_postfix_str(f"{model}/{variant}/seed{seed}")
                side = self._side(seed)
                name, params, tags = cell_run_meta(self.cfg, plan_cell(self.cfg, variant, model, seed, side.keys),
                                                   side.keys.flat())
                with tracker.child_run(name, params=params, tags=tags) as child:
                    fut = futures.get((variant, model, seed))
                    if fut is not None:  # trained in a worker: replay its history like a cached cell's
                        record, cached, replay = from_json(CellRecord, fut.result(), "worker"), False, True
                    else:
                        record, cached = train_or_load(self.cfg, self.cache, side, variant, model, seed,
                                                       device=self.device, world=self.world,
                                                       progress=False, on_epoch=epoch_logger(child))  # one bar: cells
                        replay = cached
                    log_cell(child, record, cached, replay)
                results.append(record)
        return results

    def _results(self, replicates: tuple[ItemSideRecord, ...], cells: list[CellRecord],
                 started: str) -> SuiteResults:
        from benchmark.tracking.store import git_sha

        cfg = self.cfg
        prepared = self.sides[replicates[0].seed].data
        prov = Provenance(config_hash=self.config_hash, git_sha=git_sha(), dataset=cfg.data.dataset,
                          dataset_fingerprint=prepared.fingerprint, split=cfg.data.split.kind,
                          seeds=tuple(cfg.suite.seeds), date=started, version=__version__)
        return SuiteResults(suite=cfg.suite.name, label=self.label, variants=tuple(cfg.suite.variants),
                            models=tuple(cfg.suite.models), confidence=cfg.report.confidence, provenance=prov,
                            config=to_plain(cfg), data_stats=prepared.stats, item_side=replicates,
                            cells=tuple(cells))

    def _report(self, results: SuiteResults, parent: Any) -> str:
        from benchmark.report.headline import parent_run_description
        from benchmark.report.write import write_report

        report = write_report(self.suite_dir, results)
        write_json(self.suite_dir / "results.json", to_json(dataclasses.replace(results, plots=report.plots)))
        for p in report.plots:
            parent.log_artifact(self.suite_dir / p, "plots")
        for name in ("report.md", "report.json"):
            parent.log_artifact(self.suite_dir / name)
        parent.log_artifact(report.html)
        parent.set_description(parent_run_description(self.cfg.suite.description, report.rows,
                                                      self.cfg.suite.variants, self.cfg.report.confidence,
                                                      dataset=self.cfg.data.dataset))
        return report.markdown


def suite_lock(folder: Any, world: World) -> contextlib.AbstractContextManager[Any]:
    """The suite's lock (benchmark.core.runlock); a rank of a torchrun world takes none: its launcher holds it
    for the world."""
    from benchmark.core.runlock import suite_lock as lock
    from benchmark.dist.launch import in_worker

    return contextlib.nullcontext() if world.active or in_worker() else lock(folder)


def main_run(args: Any, runs: list[tuple[str, SuiteConfig]] | None = None, world: World | None = None,
             device: Any = None) -> int:
    runs = runs or sweep_configs(args.config, args.overrides, args.quick)
    check_force(args.force)
    world = world or World()
    with suite_lock(runs[0][1].suite_dir, world):  # held across the sweep (SuiteRun.run re-enters it)
        cache = StageCache(runs[0][1].suite_dir / "artifacts", force=downstream_closure(args.force))
        for i, (label, cfg) in enumerate(runs):
            if label:
                say(f"== sweep {i + 1}/{len(runs)}: {label}")
            SuiteRun(cfg, label=label, cache=cache, world=world, device=device,
                     progress=not getattr(args, "quiet", False)).run()
    return 0
