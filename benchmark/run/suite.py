"""`qarm-bench run` and `qarm-bench plan`: the item side (benchmark.itemside.stages), the (variant, model, seed) cells,
MLflow, the report.

A rerun skips finished stages and cells (StageCache); the MLflow parent run of every invocation still gets a
child run per cell (tagged cached=true when its result came from the cache), so each invocation's run tree is
complete. The manifest `runs/<suite>/results.json` (benchmark.core.records.SuiteResults) feeds `qarm-bench report`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from benchmark.config.suite import SuiteConfig, sweep_configs
from benchmark.core import __version__
from benchmark.core.cache import StageCache, read_json, write_json
from benchmark.core.configlib import canonical_json, flatten, stable_hash, to_plain
from benchmark.core.records import (
    CellRecord,
    CodeSetRecord,
    ItemSideRecord,
    Provenance,
    SuiteResults,
    epoch_metrics,
    from_json,
    to_json,
)
from benchmark.dist import world as distributed
from benchmark.itemside.stages import (
    STAGE_NAMES,
    ItemSideKeys,
    check_force,
    downstream_closure,
    item_side_keys,
    plan_cell,
    run_item_side,
)


def _say(msg: str) -> None:
    """A status line on stderr that does not tear an active progress bar."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def cells_of(cfg: SuiteConfig) -> list[tuple[str, str, int]]:
    """(variant, model, seed) in a stable order: seeds outermost, so a partial run covers all variants."""
    return [(v, m, s) for s in cfg.suite.seeds for m in cfg.suite.models for v in cfg.suite.variants]


def replicate_seed(cfg: SuiteConfig, seed: int) -> int:
    """The item-side seed (pairs, U2I, alignment, quantizers) of seed `seed`: the seed itself under
    suite.replicate = "full"; data.split.seed for every seed under "ranker" (one item side for the suite)."""
    return seed if cfg.suite.replicate == "full" else cfg.data.split.seed


def replicate_seeds(cfg: SuiteConfig) -> list[int]:
    """The distinct item-side seeds of a suite, in seed order."""
    return list(dict.fromkeys(replicate_seed(cfg, s) for s in cfg.suite.seeds))


class SuiteRun:
    """One invocation: computes (or loads) every stage, trains missing cells, logs, reports."""

    def __init__(self, cfg: SuiteConfig, force: list[str] | tuple[str, ...] = (), progress: bool = True,
                 label: str = "", cache: StageCache | None = None) -> None:
        check_force(force)
        self.cfg = cfg
        self.progress = progress
        self.label = label  # "key=value" of an ablation sweep; its report goes to runs/<suite>/sweep/<label>/
        self.suite_dir = cfg.suite_dir / "sweep" / label if label else cfg.suite_dir
        # one cache per suite, shared by all values of a sweep (each forced entry recomputes once)
        self.cache = cache or StageCache(cfg.suite_dir / "artifacts", force=downstream_closure(force))
        self.config_hash = stable_hash(cfg)
        self.keys: dict[int, ItemSideKeys] = {}
        self.device: Any = None  # torch.device of suite.device, resolved when the run starts
        self.sides: dict[int, dict[str, Any]] = {}

    # -- item side -------------------------------------------------------------------------------

    def item_side(self) -> None:
        """Every replicate's item side (data, pairs, frozen, align, code sets), computed or loaded."""
        from benchmark.data.preparation import data_key

        dkey = data_key(self.cfg.data)
        data = None
        for rseed in replicate_seeds(self.cfg):
            self.keys[rseed] = keys = item_side_keys(self.cfg, dkey, rseed)
            side = run_item_side(self.cfg, self.cache, rseed, keys, progress=self.progress, data=data)
            data = side["data"]
            self.sides[rseed] = side

    def train_or_load(self, variant: str, model: str, seed: int, on_epoch: Any = None) -> tuple[CellRecord, bool]:
        """A cell's result; trains it unless cached."""
        from benchmark.cells.inputs import cell_inputs, rank_config

        rseed = replicate_seed(self.cfg, seed)
        plan = plan_cell(self.cfg, variant, model, seed, self.keys[rseed])
        if distributed.cell_cached(self.cache, plan.key):  # rank 0's view: all ranks train a cell, or none
            path = self.cache.path("rank", plan.key) / "result.json"
            return from_json(CellRecord, read_json(path), path), True
        from benchmark.cells.train import train_cell

        distributed.set_where(f"cell {model}/{variant}/seed{seed}")
        distributed.check_fault_injection(f"cell {model}/{variant}/seed{seed}")
        inputs = cell_inputs(plan, self.sides[rseed], self.cfg.rank.embedding_dim, self.cfg.quantize.tokens)
        # per-epoch bar (running loss, samples/s) only on a terminal: in a log file it would be noise
        res = train_cell(model, inputs, rank_config(self.cfg.rank, plan), seed, on_epoch=on_epoch,
                         progress=self.progress and sys.stderr.isatty(), device=self.device,
                         world=distributed.current())
        record = CellRecord(model=model, variant=variant, seed=seed, key=plan.key, best_epoch=res.best_epoch,
                            val_best=res.val_best, test=res.test, history=res.history, sim_search=plan.sim_search,
                            sim_search_codes=plan.sim_search_codes, test_bootstrap=res.test_bootstrap,
                            n_embedding_parameters=res.n_embedding_parameters,
                            n_dense_parameters=res.n_dense_parameters, replicate_seed=plan.replicate_seed)
        if not distributed.is_main():  # every rank trained the cell; rank 0 writes it
            return record, False
        with self.cache.writing("rank", plan.key, {"variant": variant, "model": model, "seed": seed}) as d:
            (d / "result.json").write_text(json.dumps(to_json(record), default=float))
            res.test_predictions.write_parquet(d / "test_predictions.parquet")
        return record, False

    # -- the whole run ---------------------------------------------------------------------------

    def run(self) -> SuiteResults:
        """Take the suite's lock (one process per suite; before anything is written), then run."""
        with _suite_lock(self.cfg.suite_dir):
            return self._run()

    def _run(self) -> SuiteResults:
        import torch

        from benchmark.core.device import resolve_device
        from benchmark.tracking.store import Tracker, describe_reaped

        cfg = self.cfg
        torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.suite.device)  # a CUDA device on a machine without one fails here
        main = distributed.is_main()  # other ranks train with rank 0 but log and write nothing
        tracker = Tracker.for_suite(cfg.suite.name, cfg.suite.tracking_uri, cfg.suite.runs_dir) if main \
            else distributed.NullTracker()
        tracker.check()  # an unreachable store is reported before any training
        for line in describe_reaped(tracker.reap_dead_runs()):  # runs of dead processes -> KILLED
            _say(f"[reap]   {line}")
        self.suite_dir.mkdir(parents=True, exist_ok=True)
        removed = self.cache.clean_partial() if main else 0
        distributed.barrier()
        if removed:
            _say(f"[resume] removed {removed} partial stage folder(s) left by an interrupted run")
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        run_name = f"{cfg.suite.name} {self.label} {started}" if self.label else f"{cfg.suite.name} {started}"
        with tracker.parent_run(run_name, params=flatten(cfg), tags={"config_hash": self.config_hash,
                                                                    "suite": cfg.suite.name,
                                                                    "sweep": self.label,
                                                                    "device": str(self.device),
                                                                    "world_size": distributed.current().size}) as parent:
            parent.log_text(canonical_json(cfg), "config/resolved.json")
            self.item_side()
            first = self.keys[replicate_seeds(cfg)[0]]
            parent.set_tags({f"stage.{k}": v for k, v in first.flat().items()} | {"dataset_fingerprint": first.key("data")})
            replicates = tuple(self._replicate_record(s) for s in replicate_seeds(cfg))
            self._log_item_side(parent, replicates)
            cells = self._run_cells(tracker)
            results = self._results(replicates, cells, started)
            if not main:
                return results
            md = self._report(results, parent)
        print(md)
        _say(f"Done. Report: {self.suite_dir / 'report.md'}  Plots: {self.suite_dir / 'plots'}\n"
             f"MLflow: {tracker.tracking_uri} (experiment '{cfg.suite.name}'); open it with `qarm-bench ui` "
             f"(http://127.0.0.1:5000)")
        return results

    def _replicate_record(self, rseed: int) -> ItemSideRecord:
        side = self.sides[rseed]
        code_sets = tuple(CodeSetRecord(name, cs.kind, to_plain(cs.diagnostics)) for name, cs in side["codes"].items())
        return ItemSideRecord(seed=rseed, stage_keys=self.keys[rseed].flat(), pair_stats=side["pairs"].stats,
                              alignment=side["align"].summary, code_sets=code_sets,
                              token_coverage=self._token_coverage(side))

    def _token_coverage(self, side: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Per code set the variants tokenise: the share of the cold test items' tokens that some training item
        also has (a token no training item has is an embedding row the ranker never trained)."""
        import numpy as np

        from benchmark.config.variants import get_variant
        from qarm.quantize.tokenize import token_coverage, tokenize_codes

        items = side["data"].items
        train = ~items["is_cold"].to_numpy()
        in_test = np.zeros(items.height, dtype=bool)
        in_test[side["data"].test["item_idx"].unique().to_numpy()] = True
        out = {}
        for v in map(get_variant, self.cfg.suite.variants):
            cs = side["codes"].get(f"{v.codes}_{self.cfg.quantize.quantizer}") if v.codes else None
            if cs is None or cs.kind != "rq" or cs.name in out:
                continue
            tables = tokenize_codes(cs.codes, cs.vocab_sizes, train, self.cfg.quantize.tokens)
            out[cs.name] = to_plain(token_coverage(tables, train, ~train & in_test))
        return out

    def _log_item_side(self, parent: Any, replicates: tuple[ItemSideRecord, ...]) -> None:
        """Data stats once; pair, alignment and code statistics of the first replicate under the plain names
        (`pairs_n_pairs`, `align_aligned_recall`, ...), and of every replicate with the suffix `_r<seed>` when
        the suite has several item-side replicates."""
        prepared = self.sides[replicates[0].seed]["data"]
        parent.log_dict(prepared.stats, "stats/data.json")
        numeric = {f"data_{k}": v for k, v in prepared.stats.items() if isinstance(v, int | float)}
        suffixes = [(replicates[0], "")] + ([(r, f"_r{r.seed}") for r in replicates] if len(replicates) > 1 else [])
        for rep, sfx in suffixes:
            parent.log_dict(to_json(rep), f"stats/item_side{sfx}.json")
            numeric |= {f"pairs_{k}{sfx}": v for k, v in to_plain(rep.pair_stats).items() if _is_number(v)}
            for cs in rep.code_sets:
                numeric |= {f"codes_{cs.name}_{k}{sfx}": v for k, v in cs.diagnostics.items() if _is_number(v)}
            a = rep.alignment
            numeric |= {f"align_{k}{sfx}": v for k, v in (("frozen_recall", a.frozen_recall),
                                                           ("aligned_recall", a.aligned_recall),
                                                           ("best_epoch", a.best_epoch)) if _is_number(v)}
            for h in a.history:
                parent.log_metrics({f"align_loss{sfx}": h.loss, f"align_val_recall{sfx}": h.val_recall}, step=h.epoch)
        parent.log_metrics(numeric)

    def _pending(self) -> list[tuple[str, str, int]]:
        """The cells whose results are not cached (they train)."""
        return [(v, m, s) for v, m, s in cells_of(self.cfg)
                if not self.cache.done("rank", plan_cell(self.cfg, v, m, s, self.keys[replicate_seed(self.cfg, s)]).key)]

    def _run_cells(self, tracker: Any) -> list[CellRecord]:
        """Every cell, in order, each in its MLflow child run; uncached cells train in `cfg.workers` worker
        processes when there are several (benchmark.run.pool), else here with live per-epoch metrics."""
        import contextlib

        pending = self._pending()
        pool_cm: Any = contextlib.nullcontext()
        futures: dict[tuple[str, str, int], Any] = {}
        # worker processes are a CPU engine: under torchrun every rank trains every cell with the others, and a
        # GPU is shared by one process
        workers = self.cfg.workers if not distributed.active() and self.device.type == "cpu" else 1
        if workers > 1 and len(pending) > 1:
            from benchmark.run.pool import CellPool

            _say(f"[cells]  {len(pending)} to train in {min(workers, len(pending))} worker processes "
                 f"x {self.cfg.threads} thread(s)")
            pool_cm = CellPool(min(workers, len(pending)), self.cfg.threads)
        with pool_cm as pool:
            if pool is not None:
                cfg_json = canonical_json(self.cfg)
                futures = {c: pool.submit(cfg_json, self.cache.root, self.cache.forced, *c) for c in pending}
            return self._log_cells(tracker, futures)

    def _log_cells(self, tracker: Any, futures: dict[tuple[str, str, int], Any]) -> list[CellRecord]:
        from tqdm import tqdm

        results = []
        bar = tqdm(cells_of(self.cfg), desc="cells", unit="cell", disable=not self.progress, file=sys.stderr,
                   dynamic_ncols=True)
        for variant, model, seed in bar:
            bar.set_postfix_str(f"{model}/{variant}/seed{seed}")
            rseed = replicate_seed(self.cfg, seed)
            plan = plan_cell(self.cfg, variant, model, seed, self.keys[rseed])
            tags = {"variant": variant, "model": model, "seed": seed, "cell_key": plan.key,
                    "replicate_seed": rseed, "sim_search": plan.sim_search or "",
                    "sim_search_codes": plan.sim_search_codes or "",
                    **{f"stage.{k}": v for k, v in self.keys[rseed].flat().items()}}
            params = {"variant": variant, "model": model, "seed": seed, "quantizer": self.cfg.quantize.quantizer,
                      **flatten(self.cfg.rank, "rank")}
            with tracker.child_run(f"{model}/{variant}/seed{seed}", params=params, tags=tags) as child:
                def on_epoch(epoch: int, metrics: dict[str, float], _child: Any = child) -> None:
                    _child.log_metrics(metrics, step=epoch)

                fut = futures.get((variant, model, seed))
                if fut is not None:  # trained in a worker: replay its history like a cached cell's
                    record, cached, replay = from_json(CellRecord, fut.result(), "worker"), False, True
                else:
                    record, cached = self.train_or_load(variant, model, seed, on_epoch=on_epoch)
                    replay = cached
                if replay:  # so every invocation's child runs carry the per-epoch curves
                    for h in record.history:
                        child.log_metrics(epoch_metrics(h), step=h.epoch)
                child.set_tags({"cached": str(cached).lower()})
                final = {f"test_{s}_{m}": v for s, ms in record.test.items() for m, v in ms.items()}
                final |= {f"best_val_{m}": v for m, v in record.val_best.items()}
                child.log_metrics({**final, "best_epoch": record.best_epoch,
                                   "n_embedding_parameters": record.n_embedding_parameters,
                                   "n_dense_parameters": record.n_dense_parameters})
            results.append(record)
        return results

    def _results(self, replicates: tuple[ItemSideRecord, ...], cells: list[CellRecord],
                 started: str) -> SuiteResults:
        from benchmark.tracking.store import git_sha

        cfg = self.cfg
        prepared = self.sides[replicates[0].seed]["data"]
        prov = Provenance(config_hash=self.config_hash, git_sha=git_sha(), dataset=cfg.data.dataset,
                          dataset_fingerprint=prepared.fingerprint, split=cfg.data.split.kind,
                          seeds=tuple(cfg.suite.seeds), date=started, version=__version__)
        return SuiteResults(suite=cfg.suite.name, label=self.label, variants=tuple(cfg.suite.variants),
                            models=tuple(cfg.suite.models), confidence=cfg.report.confidence, provenance=prov,
                            config=to_plain(cfg), data_stats=prepared.stats, item_side=replicates,
                            cells=tuple(cells))

    def _report(self, results: SuiteResults, parent: Any) -> str:
        import dataclasses

        from benchmark.report import plots
        from benchmark.report.headline import parent_run_description
        from benchmark.report.html import write_html
        from benchmark.report.tables import write_report

        paths = plots.make_all(results, self.suite_dir / "plots")
        results = dataclasses.replace(results, plots=tuple(str(p.relative_to(self.suite_dir)) for p in paths))
        write_json(self.suite_dir / "results.json", to_json(results))
        md, rows = write_report(self.suite_dir, results)
        html = write_html(self.suite_dir, results, rows)
        for p in paths:
            parent.log_artifact(p, "plots")
        parent.log_artifact(self.suite_dir / "report.md")
        parent.log_artifact(self.suite_dir / "report.json")
        parent.log_artifact(html)
        parent.set_description(parent_run_description(self.cfg.suite.description, rows, self.cfg.suite.variants,
                                                      self.cfg.report.confidence))
        return md


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _suite_lock(folder: Path) -> contextlib.AbstractContextManager[Any]:
    """The suite's lock (benchmark.core.runlock); a torchrun worker takes none: its launcher holds it for the world."""
    from benchmark.core.runlock import suite_lock

    return contextlib.nullcontext() if distributed.in_worker() else suite_lock(folder)


def main_run(args: Any, runs: list[tuple[str, SuiteConfig]] | None = None) -> int:
    runs = runs or sweep_configs(args.config, args.overrides, args.quick)
    check_force(args.force)
    with _suite_lock(runs[0][1].suite_dir):  # held across the sweep (SuiteRun.run re-enters it)
        cache = StageCache(runs[0][1].suite_dir / "artifacts", force=downstream_closure(args.force))
        for i, (label, cfg) in enumerate(runs):
            if label:
                _say(f"== sweep {i + 1}/{len(runs)}: {label}")
            SuiteRun(cfg, label=label, cache=cache).run()
    return 0


def main_plan(args: Any, runs: list[tuple[str, SuiteConfig]] | None = None) -> int:
    """List the stages and cells with their keys and cache state; computes nothing but the data fingerprint."""
    from benchmark.data.preparation import data_key
    from benchmark.itemside.stages import ITEM_SIDE

    for label, cfg in runs or sweep_configs(args.config, args.overrides, args.quick):
        cache = StageCache(cfg.suite_dir / "artifacts")
        dkey = data_key(cfg.data)
        print(f"suite {cfg.suite.name}{f' [{label}]' if label else ''}  config {stable_hash(cfg)}  dataset "
              f"{cfg.data.dataset} ({cfg.data.split.kind})  artifacts in {cache.root}")
        print("stages: " + " -> ".join(STAGE_NAMES))
        keys = {}
        for rseed in replicate_seeds(cfg):
            keys[rseed] = k = item_side_keys(cfg, dkey, rseed)
            print(f"item side, replicate seed {rseed}:")
            for stage in ITEM_SIDE:
                for inst in stage.instances(cfg):
                    key = k.key(stage.name, inst)
                    name = f"{stage.name}/{inst}" if inst else stage.name
                    print(f"  {name:<24} {key[:16]}  {'cached' if cache.is_cached(stage.name, key) else 'to run'}")
        cells = cells_of(cfg)
        n_cached = 0
        print(f"cells: {len(cfg.suite.variants)} variants x {len(cfg.suite.models)} models x "
              f"{len(cfg.suite.seeds)} seeds = {len(cells)}")
        for v, m, seed in cells:
            plan = plan_cell(cfg, v, m, seed, keys[replicate_seed(cfg, seed)])
            cached = cache.is_cached("rank", plan.key)
            n_cached += cached
            search = f"  search {plan.sim_search}:{plan.sim_search_codes or '-'}" if plan.sim_search else ""
            print(f"  {m:<5} {v:<17} seed {seed:<3} {plan.key}  {'cached' if cached else 'to run'}{search}")
        print(f"{n_cached}/{len(cells)} cells cached")
    return 0
