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

    def run(self) -> SuiteResults:
        """Take the suite's lock (one process per suite; before anything is written), then run."""
        with suite_lock(self.cfg.suite_dir, self.world):
            if not self.run_id:  # rank 0's choice, on every rank
                self.run_id = self.world.agree(new_run_id(self.cfg.suite_dir, self.overrides, self.quick))
            run_dir = self.cfg.suite_dir / self.run_id
            self.suite_dir = run_dir / "sweep" / self.label if self.label else run_dir
            return self._run()

    def item_side(self) -> None:
        """Every replicate's item side (data, pairs, frozen, align, code sets) under every split seed, computed or
        loaded: one data entry per split seed, shared by its replicates."""
        import torch

        from benchmark.data.preparation import data_key
        from benchmark.itemside.runner import run_item_side
        from benchmark.itemside.stages import item_side_keys

        device_class = torch.device(self.resolve_device()).type  # in the seeded stages' and cells' keys unless "cpu"
        for split_seed, scfg in self.splits:
            dkey = data_key(scfg.data)
            data = None
            sides = self.split_sides.setdefault(split_seed, {})
            for rseed in replicate_seeds(scfg):
                side = run_item_side(scfg, self.cache, item_side_keys(scfg, dkey, rseed, device_class),
                                     device=self.device, world=self.world, progress=self.progress, data=data)
                data = side.data
                sides[rseed] = side
        self.sides = self.split_sides[self.splits[0][0]]

    def _run(self) -> SuiteResults:
        import torch

        from benchmark.engine.logs import log_item_side, log_stage_keys
        from benchmark.itemside.summary import item_side_record
        from benchmark.tracking.store import describe_reaped, tracker_for

        cfg, main = self.cfg, self.world.is_main  # other ranks train with rank 0 but log and write nothing
        torch.set_num_threads(cfg.threads)
        self.resolve_device()
        tracker = tracker_for(cfg.suite.name, cfg.suite.tracking_uri, cfg.suite.runs_dir, is_main=main)
        tracker.check()  # an unreachable store is reported before any training
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
            self.item_side()
            first = self.sides[replicate_seeds(self.splits[0][1])[0]].keys
            log_stage_keys(parent, {s: self.sides[s].keys.flat() for s in replicate_seeds(self.splits[0][1])})
            parent.set_tags({"dataset_fingerprint": first.key("data")})
            replicates = tuple(dataclasses.replace(item_side_record(scfg, self.split_sides[split][s]), split_seed=split)
                               for split, scfg in self.splits for s in replicate_seeds(scfg))
            first_split = tuple(r for r in replicates if r.split_seed == self.splits[0][0])
            log_item_side(parent, self.sides[replicates[0].seed].data.stats, first_split)
            cells = self._run_cells(tracker)
            results = self._results(replicates, cells, started)
            if not main:
                return results
            results = self._primary(results)
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

    def _cells(self) -> list[tuple[int, SuiteConfig, str, str, int]]:
        """(split seed, its config, variant, model, seed) of every cell: split seeds outermost."""
        return [(split, scfg, v, m, s) for split, scfg in self.splits for v, m, s in cells_of(scfg)]

    def _pending(self) -> list[tuple[int, SuiteConfig, str, str, int]]:
        """The cells whose results are not cached (they train)."""
        return [(split, scfg, v, m, s) for split, scfg, v, m, s in self._cells()
                if not self.cache.done("rank", plan_cell(scfg, v, m, s, self._side(s, split).keys).key)]

    def _side(self, seed: int, split_seed: int | None = None) -> ItemSide:
        """The item side of seed `seed` under split seed `split_seed` (default: the first)."""
        split = self.splits[0][0] if split_seed is None else split_seed
        scfg = dict(self.splits)[split]
        return self.split_sides[split][replicate_seed(scfg, seed)]

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
            futures: dict[tuple[int, str, str, int], Any] = {}
            if pool is not None:
                cfg_json = {split: canonical_json(scfg) for split, scfg in self.splits}
                futures = {(split, v, m, s): pool.submit(cfg_json[split], self.cache.root, self.cache.forced, v, m, s)
                           for split, _, v, m, s in pending}
            several = len(self.splits) > 1
            bar = tqdm(self._cells(), desc="cells", unit="cell", disable=not self.progress, file=sys.stderr,
                       dynamic_ncols=True)
            for split, scfg, variant, model, seed in bar:
                bar.set_postfix_str(f"{model}/{variant}/seed{seed}{f'/split{split}' if several else ''}")
                side = self._side(seed, split)
                name, params, tags = cell_run_meta(scfg, plan_cell(scfg, variant, model, seed, side.keys),
                                                   side.keys.flat())
                with tracker.child_run(name, params=params, tags=tags) as child:
                    fut = futures.get((split, variant, model, seed))
                    if fut is not None:  # trained in a worker: replay its history like a cached cell's
                        record, cached, replay = from_json(CellRecord, fut.result(), "worker"), False, True
                    else:
                        record, cached = train_or_load(scfg, self.cache, side, variant, model, seed,
                                                       device=self.device, world=self.world,
                                                       progress=False, on_epoch=epoch_logger(child))  # one bar: cells
                        replay = cached
                    log_cell(child, record, cached, replay)
                results.append(record)
        return results

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
