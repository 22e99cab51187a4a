"""`qarm-bench run`: one invocation of a suite. SuiteRun orchestrates; each step is someone else's:

    item side      benchmark.itemside.runner.run_item_side       (one per split seed x replicate seed; ItemSide)
    its record     benchmark.itemside.summary.item_side_record   (pair stats, alignment, code sets, tokens)
    cells          benchmark.engine.cell.train_or_load              (here, or in worker processes: run.pool)
    MLflow         benchmark.tracking.store + benchmark.engine.logs (parent run, one child run per cell)
    primary        benchmark.engine.primary.compute_primary      (the primary family, its bootstrap from the test rows)
    report         benchmark.report.write.write_report           (statistics, tables, plots, HTML)

A rerun skips finished stages and cells (StageCache); the MLflow parent run of every invocation still gets a
child run per cell (tagged cached=true when its result came from the cache), so each invocation's run tree is
complete. Each invocation writes its own folder `runs/<suite>/<run-id>/` (benchmark.core.runs): the manifest
results.json (benchmark.core.records.SuiteResults) and the report; `runs/<suite>/latest` then names it.
The device and the World are resolved once, by whoever starts the run, and handed down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import sys
from collections.abc import Mapping
from typing import Any

from benchmark.cells.plan import plan_cell
from benchmark.config.suite import SuiteConfig, split_seed_configs, sweep_configs
from benchmark.core import __version__
from benchmark.core.cache import StageCache, write_json
from benchmark.core.configlib import canonical_json, flatten, stable_hash, to_plain
from benchmark.core.records import CellRecord, ItemSideRecord, Provenance, SuiteResults, from_json, to_json
from benchmark.core.runs import new_run_id, point_latest
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
                 device: Any = None, run_id: str = "", quick: bool = False,
                 overrides: Mapping[str, str] | None = None, mark_latest: bool = True) -> None:
        check_force(force)
        self.cfg = cfg
        self.progress = progress
        self.label = label  # "key=value" of an ablation sweep; its report goes to <run folder>/sweep/<label>/
        # run_id: the invocation's folder (benchmark.core.runs; chosen when the run starts if not given, one for
        # every value of a sweep); quick, overrides: what the invocation changed (recorded, and in the header)
        self.run_id = run_id
        self.quick = quick
        self.overrides = dict(overrides or {})
        self.mark_latest = mark_latest  # point runs/<suite>/latest here once the report is written
        self.suite_dir = cfg.suite_dir  # this run's folder, set when it starts
        # one cache per suite, shared by all values of a sweep (each forced entry recomputes once)
        self.cache = cache or StageCache(cfg.suite_dir / "artifacts", force=downstream_closure(force))
        self.config_hash = stable_hash(cfg)
        self.world = world or World()
        self.device = device
        # split seeds are the outer loop (data.split.seeds): each has its own config, data entry and item sides
        self.splits: list[tuple[int, SuiteConfig]] = split_seed_configs(cfg)
        self.split_sides: dict[int, dict[int, ItemSide]] = {}
        self.sides: dict[int, ItemSide] = {}  # the first split seed's, by replicate seed
        self._side_keys: dict[tuple[int, int], Any] | None = None

    def run(self) -> SuiteResults:
        """Take the suite's lock (one process per suite; before anything is written), then run."""
        with suite_lock(self.cfg.suite_dir, self.world):
            if not self.run_id:  # rank 0's choice, on every rank
                self.run_id = self.world.agree(new_run_id(self.cfg.suite_dir, self.overrides, self.quick))
            run_dir = self.cfg.suite_dir / self.run_id
            self.suite_dir = run_dir / "sweep" / self.label if self.label else run_dir
            return self._run()

    def side_keys(self) -> dict[tuple[int, int], Any]:
        """Every replicate's ItemSideKeys by (split seed, replicate seed), from the config and the data files alone
        (nothing runs): computed once."""
        if self._side_keys is None:

            from benchmark.data.preparation import data_key
            from benchmark.itemside.stages import item_side_keys

            device_class = self.device_type()  # in the seeded stages' and cells' keys unless "cpu"
            self._side_keys = {}
            for split_seed, scfg in self.splits:
                dkey = data_key(scfg.data)
                for rseed in replicate_seeds(scfg):
                    self._side_keys[(split_seed, rseed)] = item_side_keys(scfg, dkey, rseed, device_class)
        return self._side_keys

    def item_side(self, on_sealed: Any = None) -> None:
        """Every replicate's item side (data, pairs, frozen, align, code sets) under every split seed, computed or
        loaded: one data entry per split seed, shared by its replicates. on_sealed(stage, key): called as each
        entry is sealed (the cell scheduler starts the cells that read it)."""
        from benchmark.itemside.runner import run_item_side

        for split_seed, scfg in self.splits:
            data = None
            sides = self.split_sides.setdefault(split_seed, {})
            for rseed in replicate_seeds(scfg):
                keys = self.side_keys()[(split_seed, rseed)]
                # what the cells read first, where the stage graph allows (cells start on them: engine.pool)
                first = {e for v, m, s in cells_of(scfg) for e in plan_cell(scfg, v, m, s, keys).reads}
                side = run_item_side(scfg, self.cache, keys, device=self.device, world=self.world,
                                     progress=self.progress, data=data, first=first,
                                     on_entry=None if on_sealed is None else
                                     lambda stage, inst, k=keys: on_sealed(stage, k.key(stage, inst)))
                data = side.data
                sides[rseed] = side
        self.sides = self.split_sides[self.splits[0][0]]

    def _run(self) -> SuiteResults:
        import torch

        from benchmark.tracking.store import tracker_for

        cfg, main = self.cfg, self.world.is_main  # other ranks train with rank 0 but log and write nothing
        torch.set_num_threads(cfg.threads)
        self.resolve_device()
        tracker = tracker_for(cfg.suite.name, cfg.suite.tracking_uri, cfg.suite.runs_dir, is_main=main)
        tracker.check()  # an unreachable store is reported before any training
        with contextlib.ExitStack() as stack:
            # the worker processes (if any) start now and import the training code while the item side begins;
            # a cell starts as soon as the item-side entries it reads are finished
            scheduler = self._scheduler(stack)
            results, md = self._run_logged(tracker, scheduler, stack)
        if md is None:  # a rank other than 0
            return results
        print(md)
        say(f"Done. Report: {self.suite_dir / 'report.md'}  Plots: {self.suite_dir / 'plots'}\n"
            f"MLflow: {tracker.tracking_uri} (experiment '{cfg.suite.name}'); open it with `qarm-bench ui` "
            f"(http://127.0.0.1:5000)")
        return results

    def _run_logged(self, tracker: Any, scheduler: Any,
                    workers: contextlib.ExitStack) -> tuple[SuiteResults, str | None]:
        """The run under its MLflow parent run, once the store is checked: (results, the report's markdown; None
        on a rank other than 0). workers: closed (the worker processes let go) once the cells are in."""
        from benchmark.engine.logs import log_item_side, log_stage_keys
        from benchmark.itemside.summary import item_side_record
        from benchmark.tracking.store import describe_reaped

        cfg, main = self.cfg, self.world.is_main
        for line in describe_reaped(tracker.reap_dead_runs()):  # runs of dead processes -> KILLED
            say(f"[reap]   {line}")
        if main:
            self.suite_dir.mkdir(parents=True, exist_ok=True)
        removed = self.cache.clean_partial() if main else 0
        self.world.barrier()
        if removed:
            say(f"[resume] removed {removed} partial stage folder(s) left by an interrupted run")
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        run_name = f"{cfg.suite.name} {self.label} {started}" if self.label else f"{cfg.suite.name} {started}"
        run_name += invocation_suffix(self.quick, self.overrides)
        tags = {"config_hash": self.config_hash, "suite": cfg.suite.name, "sweep": self.label,
                "device": str(self.device), "world_size": self.world.size, "run_id": self.run_id,
                "quick": str(self.quick).lower(), "overrides": canonical_json(self.overrides)}
        tags |= {f"override.{k}": v for k, v in self.overrides.items()}
        with tracker.parent_run(run_name, params=flatten(cfg), tags=tags) as parent:
            parent.log_text(canonical_json(cfg), "config/resolved.json")
            self.item_side(on_sealed=scheduler.sealed if scheduler is not None else None)
            if scheduler is not None:
                scheduler.item_side_done()
            first = self.sides[replicate_seeds(self.splits[0][1])[0]].keys
            log_stage_keys(parent, {s: self.sides[s].keys.flat() for s in replicate_seeds(self.splits[0][1])})
            parent.set_tags({"dataset_fingerprint": first.key("data")})
            replicates = tuple(dataclasses.replace(item_side_record(scfg, self.split_sides[split][s]), split_seed=split)
                               for split, scfg in self.splits for s in replicate_seeds(scfg))
            first_split = tuple(r for r in replicates if r.split_seed == self.splits[0][0])
            log_item_side(parent, self.sides[replicates[0].seed].data.stats, first_split)
            cells = self._run_cells(tracker, scheduler)
            workers.close()
            results = self._results(replicates, cells, started)
            if not main:
                return results, None
            results = self._primary(results)
            return results, self._report(results, parent)

    def device_type(self) -> str:
        """The class of the run's device: "cpu", "cuda", ..."""
        import torch

        return torch.device(self.resolve_device()).type

    def resolve_device(self) -> Any:
        """The run's torch.device: the one handed in, else suite.device resolved here, once (a CUDA device on a
        machine without one fails here)."""
        if self.device is None:
            from benchmark.core.device import resolve_device

            self.device = resolve_device(self.cfg.suite.device)
        return self.device

    def _cells(self) -> list[tuple[int, SuiteConfig, str, str, int]]:
        """(split seed, its config, variant, model, seed) of every cell: split seeds outermost."""
        return [(split, scfg, v, m, s) for split, scfg in self.splits for v, m, s in cells_of(scfg)]

    def _pending(self) -> list[tuple[int, SuiteConfig, str, str, int]]:
        """The cells whose results are not cached (they train)."""
        keys = self.side_keys()
        return [(split, scfg, v, m, s) for split, scfg, v, m, s in self._cells()
                if not self.cache.done("rank", plan_cell(scfg, v, m, s, keys[(split, replicate_seed(scfg, s))]).key)]

    def _side(self, seed: int, split_seed: int | None = None) -> ItemSide:
        """The item side of seed `seed` under split seed `split_seed` (default: the first)."""
        split = self.splits[0][0] if split_seed is None else split_seed
        scfg = dict(self.splits)[split]
        return self.split_sides[split][replicate_seed(scfg, seed)]

    def _scheduler(self, stack: contextlib.ExitStack) -> Any:
        """The CellScheduler (benchmark.engine.pool) of this run's uncached cells, its worker processes started,
        entered on `stack`; None when they train here: a single worker, a single cell to train, a torchrun world
        (every rank trains every cell with the others) or a GPU (shared by one process)."""
        workers = self.cfg.workers if not self.world.active and self.device_type() == "cpu" else 1
        pending = self._pending() if workers > 1 else []
        if len(pending) <= 1:
            return None
        from benchmark.engine.plan import cell_cost
        from benchmark.engine.pool import CellPool, CellScheduler

        n = min(workers, len(pending))
        say(f"[cells]  {len(pending)} to train in {n} worker processes x {self.cfg.threads} thread(s), each as "
            "soon as the item-side entries it reads are finished")
        scheduler = stack.enter_context(CellScheduler(CellPool(n, self.cfg.threads)))
        keys = self.side_keys()
        cfg_json = {split: canonical_json(scfg) for split, scfg in self.splits}
        for split, scfg, v, m, s in pending:
            k = keys[(split, replicate_seed(scfg, s))]
            plan = plan_cell(scfg, v, m, s, k)
            scheduler.add((split, v, m, s), [(stage, k.key(stage, inst)) for stage, inst in plan.reads],
                          (cfg_json[split], self.cache.root, self.cache.forced, k, v, m, s),
                          cost=cell_cost(m, [plan.code_set, plan.vq_set]))
        return scheduler

    def _run_cells(self, tracker: Any, scheduler: Any = None) -> list[CellRecord]:
        """Every cell in its MLflow child run; returns their records in cell order. Without a scheduler each
        cell, in order, is loaded or trained here with live per-epoch metrics; with one (benchmark.engine.pool:
        its workers started during the item side) the cached cells are loaded here first, in order, then each
        worker cell's child run is written as the cell finishes, its history replayed."""
        from concurrent.futures import as_completed

        from tqdm import tqdm

        from benchmark.engine.cell import train_or_load
        from benchmark.engine.logs import cell_run_meta, epoch_logger, log_cell

        cells = self._cells()
        queued = set() if scheduler is None else scheduler.names()  # decided before the item side
        results: list[CellRecord | None] = [None] * len(cells)
        several = len(self.splits) > 1
        bar = tqdm(total=len(cells), desc="cells", unit="cell", disable=not self.progress, file=sys.stderr,
                   dynamic_ncols=True)

        def child_run(i: int) -> Any:
            split, scfg, variant, model, seed = cells[i]
            bar.set_postfix_str(f"{model}/{variant}/seed{seed}{f'/split{split}' if several else ''}")
            side = self._side(seed, split)
            name, params, tags = cell_run_meta(scfg, plan_cell(scfg, variant, model, seed, side.keys),
                                               side.keys.flat())
            return tracker.child_run(name, params=params, tags=tags)

        for i, (split, scfg, variant, model, seed) in enumerate(cells):
            if (split, variant, model, seed) in queued:
                continue
            with child_run(i) as child:
                record, cached = train_or_load(scfg, self.cache, self._side(seed, split), variant, model, seed,
                                               device=self.device, world=self.world, progress=False,
                                               on_epoch=epoch_logger(child))  # one bar: cells
                log_cell(child, record, cached, replay=cached)
            results[i] = record
            bar.update(1)
        if queued:
            index = {(split, v, m, s): i for i, (split, _, v, m, s) in enumerate(cells)}
            futures = {scheduler.future(name): index[name] for name in queued}
            for fut in as_completed(futures):  # a worker's error is raised here, as its cell finishes
                i = futures[fut]
                record = from_json(CellRecord, fut.result(), "worker")
                with child_run(i) as child:  # trained in a worker: replay its history like a cached cell's
                    log_cell(child, record, cached=False, replay=True)
                results[i] = record
                bar.update(1)
        bar.close()
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _results(self, replicates: tuple[ItemSideRecord, ...], cells: list[CellRecord],
                 started: str) -> SuiteResults:
        from benchmark.engine.environment import math_stack
        from benchmark.tracking.store import git_sha

        cfg = self.cfg
        prepared = self.sides[replicates[0].seed].data
        prov = Provenance(config_hash=self.config_hash, git_sha=git_sha(), dataset=cfg.data.dataset,
                          dataset_fingerprint=prepared.fingerprint, split=cfg.data.split.kind,
                          seeds=tuple(cfg.suite.seeds), date=started, version=__version__,
                          environment=math_stack(cfg.threads, cfg.workers, self.device),
                          split_seeds=tuple(split for split, _ in self.splits))
        split_stats = {str(split): next(iter(sides.values())).data.stats for split, sides in self.split_sides.items()}
        return SuiteResults(suite=cfg.suite.name, label=self.label, variants=tuple(cfg.suite.variants),
                            models=tuple(cfg.suite.models), confidence=cfg.report.confidence, provenance=prov,
                            config=to_plain(cfg), data_stats=prepared.stats, item_side=replicates,
                            cells=tuple(cells), run_id=self.run_id, quick=self.quick, overrides=self.overrides,
                            split_data_stats=split_stats)

    def _primary(self, results: SuiteResults) -> SuiteResults:
        """The primary family with its hierarchical bootstrap (benchmark.engine.primary), into the manifest."""
        from benchmark.engine.primary import compute_primary

        family = compute_primary(self.cfg, self.cache, results.cells,
                                 lambda split, seed: self._side(seed, split).data.items, warn=say)
        if family is None:
            return results
        say(f"[primary] {family.size} tests in the primary family, bootstrap of "
            f"{self.cfg.report.bootstrap_draws} draws each")
        return dataclasses.replace(results, primary=to_plain(family))

    def _report(self, results: SuiteResults, parent: Any) -> str:
        from benchmark.engine.logs import log_primary
        from benchmark.report.headline import parent_run_description
        from benchmark.report.primary import results_family
        from benchmark.report.write import write_report

        report = write_report(self.suite_dir, results)
        write_json(self.suite_dir / "results.json", to_json(dataclasses.replace(results, plots=report.plots)))
        if self.mark_latest:  # only now is the invocation complete
            point_latest(self.cfg.suite_dir, self.run_id)
        for p in report.plots:
            parent.log_artifact(self.suite_dir / p, "plots")
        for name in ("report.md", "report.json"):
            parent.log_artifact(self.suite_dir / name)
        parent.log_artifact(report.html)
        family = results_family(results)
        if family is not None:
            parent.log_artifact(self.suite_dir / "primary.json")
            log_primary(parent, family)
        parent.set_description(parent_run_description(self.cfg.suite.description, report.rows,
                                                      self.cfg.suite.variants, self.cfg.report.confidence,
                                                      primary=family, dataset=self.cfg.data.dataset))
        return report.markdown


def suite_lock(folder: Any, world: World) -> contextlib.AbstractContextManager[Any]:
    """The suite's lock (benchmark.core.runlock); a rank of a torchrun world takes none: its launcher holds it
    for the world."""
    from benchmark.core.runlock import suite_lock as lock
    from benchmark.dist.launch import in_worker

    return contextlib.nullcontext() if world.active or in_worker() else lock(folder)


def invocation_suffix(quick: bool, overrides: Mapping[str, str]) -> str:
    """What the MLflow parent run's name adds for a --quick or --set invocation: " [quick; k=v, ...]"."""
    parts = (["quick"] if quick else []) + ([", ".join(f"{k}={v}" for k, v in overrides.items())] if overrides else [])
    text = "; ".join(parts)
    return f" [{text[:160] + '…' if len(text) > 160 else text}]" if text else ""


def run_invocation(runs: list[tuple[str, SuiteConfig]], *, overrides: Mapping[str, str], quick: bool,
                   force: list[str] | tuple[str, ...] = (), progress: bool = True, world: World | None = None,
                   device: Any = None) -> dict[str, SuiteResults]:
    """One invocation (every value of a sweep) in one run folder runs/<suite>/<run-id>/, under the suite's lock;
    `latest` names the folder after the last value's report. Returns {label: SuiteResults}."""
    check_force(force)
    world = world or World()
    suite_dir = runs[0][1].suite_dir
    out = {}
    with suite_lock(suite_dir, world):  # held across the sweep (SuiteRun.run re-enters it)
        run_id = world.agree(new_run_id(suite_dir, overrides, quick))
        cache = StageCache(suite_dir / "artifacts", force=downstream_closure(force))
        for i, (label, cfg) in enumerate(runs):
            if label:
                say(f"== sweep {i + 1}/{len(runs)}: {label}")
            out[label] = SuiteRun(cfg, label=label, cache=cache, world=world, device=device, progress=progress,
                                  run_id=run_id, quick=quick, overrides=overrides,
                                  mark_latest=i == len(runs) - 1).run()
    return out


def main_run(args: Any, runs: list[tuple[str, SuiteConfig]] | None = None, world: World | None = None,
             device: Any = None) -> int:
    from benchmark.config.suite import invocation_overrides, load_config

    runs = runs or sweep_configs(args.config, args.overrides, args.quick)
    overrides = invocation_overrides(load_config(args.config, args.overrides), args.overrides, args.quick)
    run_invocation(runs, overrides=overrides, quick=args.quick, force=args.force, world=world, device=device,
                   progress=not getattr(args, "quiet", False))
    return 0
