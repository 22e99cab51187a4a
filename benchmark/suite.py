"""`qarm-bench run` and `qarm-bench plan`: the stage DAG, the (variant, model, seed) cells, MLflow, report.

    data ─► pairs ─► frozen ─► align ─► codes ─► rank cells ─► report
    (split)  (U2I+Swing) (MiniLM) (InfoNCE)  (RQ-Kmeans, RQ-VAE, VQ)  (DLRM, DIN, SIM)

A rerun skips finished stages and cells (StageCache); the MLflow parent run of every invocation still gets
a child run per cell (tagged cached=true when its result came from the cache), so each invocation's run tree
is complete. The manifest `runs/<suite>/results.json` feeds `qarm-bench report`.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from typing import Any

from benchmark import __version__
from benchmark.config import SuiteConfig, sweep_configs
from benchmark.configlib import canonical_json, flatten, stable_hash, to_plain
from benchmark.errors import ConfigError
from benchmark.stages import STAGES, StageCache, read_json, write_json


def _say(msg: str) -> None:
    """A status line on stderr that does not tear an active progress bar."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def cells_of(cfg: SuiteConfig) -> list[tuple[str, str, int]]:
    """(variant, model, seed) in a stable order: seeds outermost, so a partial run covers all variants."""
    return [(v, m, s) for s in cfg.suite.seeds for m in cfg.suite.models for v in cfg.suite.variants]


def _check_force(force: list[str]) -> None:
    bad = [f for f in force if f not in STAGES]
    if bad:
        raise ConfigError(f"--force {bad[0]}: unknown stage; expected one of {', '.join(STAGES)}")


class SuiteRun:
    """One invocation: computes (or loads) every stage, trains missing cells, logs, reports."""

    def __init__(self, cfg: SuiteConfig, force: list[str] | tuple[str, ...] = (), progress: bool = True,
                 label: str = "", cache: StageCache | None = None) -> None:
        _check_force(list(force))
        self.cfg = cfg
        self.progress = progress
        self.label = label  # "key=value" of an ablation sweep; its report goes to runs/<suite>/sweep/<label>/
        self.suite_dir = cfg.suite_dir / "sweep" / label if label else cfg.suite_dir
        # one cache per suite, shared by all values of a sweep (each forced entry recomputes once)
        self.cache = cache or StageCache(cfg.suite_dir / "artifacts", force=force)
        self.config_hash = stable_hash(cfg)
        self.keys: dict[str, str] = {}

    # -- stages ----------------------------------------------------------------------------------

    def item_side(self) -> dict[str, Any]:
        """data, pairs, frozen, align, codes: returns everything the cells and the report need."""
        from tqdm import tqdm

        from benchmark import pipeline as P

        bar = tqdm(total=5, desc="stages", unit="stage", disable=not self.progress, file=sys.stderr,
                   dynamic_ncols=True, bar_format="{desc}: {n}/{total} {bar} [{elapsed}<{remaining}] {postfix}")

        def done(name: str) -> None:
            bar.update(1)
            bar.set_postfix_str(f"{name} done")

        t0 = time.monotonic()
        prepared, st = P.run_data(self.cfg, self.cache)
        self.keys = P.stage_keys(self.cfg, st.key)
        _say(f"[data]   {self.cfg.data.dataset}: {prepared.stats.get('users')} users, "
             f"{prepared.stats.get('items')} items, train/val/test {prepared.stats.get('train')}/"
             f"{prepared.stats.get('val')}/{prepared.stats.get('test')}  ({time.monotonic() - t0:.1f}s)")
        done("data")
        t0 = time.monotonic()
        pairs, pair_stats, _ = P.run_pairs(self.cfg, self.cache, prepared, self.keys["pairs"])
        _say(f"[pairs]  {len(pairs)} pairs {pair_stats.get('pairs_per_source')}  ({time.monotonic() - t0:.1f}s)")
        done("pairs")
        t0 = time.monotonic()
        feats, _ = P.run_frozen(self.cfg, self.cache, prepared, self.keys["frozen"])
        frozen = feats.frozen_embeddings()
        _say(f"[frozen] embeddings {frozen.shape}  ({time.monotonic() - t0:.1f}s)")
        done("frozen")
        t0 = time.monotonic()
        aligned, align_summary, _ = P.run_align(self.cfg, self.cache, prepared, pairs, feats, self.keys["align"])
        _say(f"[align]  embeddings {aligned.shape}; held-out pair recall@{self.cfg.align.recall_k}: frozen "
             f"{align_summary.get('frozen_recall', float('nan')):.3f} -> aligned "
             f"{align_summary.get('aligned_recall', float('nan')):.3f}  ({time.monotonic() - t0:.1f}s)")
        done("align")
        t0 = time.monotonic()
        embeddings = {"frozen": frozen, "aligned": aligned}
        codes, diags, _ = P.run_codes(self.cfg, self.cache, embeddings, self.keys["codes"])
        _say(f"[codes]  {', '.join(f'{k}{tuple(v.shape)}' for k, v in codes.items())}  "
             f"({time.monotonic() - t0:.1f}s)")
        done("codes")
        bar.close()
        return {"prepared": prepared, "pairs": pairs, "pair_stats": pair_stats, "embeddings": embeddings,
                "align": align_summary, "codes": codes, "diagnostics": diags}

    def train_or_load(self, variant: str, model: str, seed: int, side: dict[str, Any],
                      on_epoch: Any = None) -> tuple[dict[str, Any], bool]:
        """A cell's result (history, best epoch, test metrics per slice); trains it unless cached."""
        from benchmark import pipeline as P

        key = P.cell_key(self.cfg, variant, model, seed, self.keys)
        if self.cache.done("rank", key):
            return read_json(self.cache.path("rank", key) / "result.json"), True
        from benchmark.train import CellData, train_cell

        prepared = side["prepared"]
        arrays = P.variant_arrays(self.cfg, variant, side["codes"], side["embeddings"])
        codes = arrays["codes"]
        data = CellData(train=prepared.train, val=prepared.val, test=prepared.test, items=prepared.items,
                        users=prepared.users, codes=codes,
                        codebook_size=None if codes is None else P.code_vocab(self.cfg, codes, len(prepared.items)),
                        vq_codes=arrays["vq_codes"], dense=arrays["dense"])
        # per-epoch bar (running loss, samples/s) only on a terminal: in a log file it would be noise
        res = train_cell(model, variant, data, self.cfg.rank, seed, on_epoch=on_epoch,
                         progress=self.progress and sys.stderr.isatty())
        out = {
            "model": model, "variant": variant, "seed": seed, "key": key, "best_epoch": res.best_epoch,
            "val_best": res.val_best, "test": res.test, "sim_search": res.sim_search,
            "n_parameters": res.n_parameters,
            "history": [{"epoch": h.epoch, "train_loss": h.train_loss, **{f"val_{k}": v for k, v in h.val.items()},
                         "seconds": h.seconds, "samples_per_s": h.samples_per_s} for h in res.history],
        }
        with self.cache.writing("rank", key, {"variant": variant, "model": model, "seed": seed}) as d:
            (d / "result.json").write_text(json.dumps(out, default=float))
            res.test_predictions.write_parquet(d / "test_predictions.parquet")
        return out, False

    # -- the whole run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        import torch

        from benchmark.tracking import Tracker

        cfg = self.cfg
        torch.set_num_threads(cfg.threads)
        tracker = Tracker.for_suite(cfg.suite.name, cfg.suite.tracking_uri, cfg.suite.runs_dir)
        tracker.check()  # an unreachable store is reported before any training
        self.suite_dir.mkdir(parents=True, exist_ok=True)
        removed = self.cache.clean_partial()
        if removed:
            _say(f"[resume] removed {removed} partial stage folder(s) left by an interrupted run")
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        run_name = f"{cfg.suite.name} {self.label} {started}" if self.label else f"{cfg.suite.name} {started}"
        with tracker.parent_run(run_name, params=flatten(cfg), tags={"config_hash": self.config_hash,
                                                                    "suite": cfg.suite.name,
                                                                    "sweep": self.label}) as parent:
            parent.log_text(canonical_json(cfg), "config/resolved.json")
            side = self.item_side()
            parent.set_tags({f"stage.{k}": v for k, v in self.keys.items()} |
                            {"dataset_fingerprint": self.keys["data"]})
            self._log_item_side(parent, side)
            cells = self._run_cells(tracker, side)
            manifest = self._manifest(side, cells, started)
            write_json(self.suite_dir / "results.json", manifest)
            md = self._report(manifest, parent)
        print(md)
        _say(f"Done. Report: {self.suite_dir / 'report.md'}  Plots: {self.suite_dir / 'plots'}\n"
             f"MLflow: {tracker.tracking_uri} (experiment '{cfg.suite.name}'); open it with `qarm-bench ui` "
             f"(http://127.0.0.1:5000)")
        return manifest

    def _log_item_side(self, parent: Any, side: dict[str, Any]) -> None:
        prepared = side["prepared"]
        parent.log_dict(prepared.stats, "stats/data.json")
        parent.log_dict(side["pair_stats"], "stats/pairs.json")
        parent.log_dict(side["diagnostics"], "stats/codes.json")
        parent.log_dict(side["align"], "stats/alignment.json")
        numeric = {f"data_{k}": v for k, v in prepared.stats.items() if isinstance(v, int | float)}
        numeric |= {f"pairs_{k}": v for k, v in side["pair_stats"].items() if isinstance(v, int | float)}
        for name, d in side["diagnostics"].items():
            numeric |= {f"codes_{name}_{k}": v for k, v in d.items() if isinstance(v, int | float)}
        numeric |= {f"align_{k}": v for k, v in side["align"].items() if isinstance(v, int | float)}
        parent.log_metrics(numeric)
        for h in side["align"].get("history", []):
            parent.log_metrics({"align_loss": h.get("loss"), "align_val_recall": h.get("val_recall")},
                               step=int(h.get("epoch", 0)))

    def _run_cells(self, tracker: Any, side: dict[str, Any]) -> list[dict[str, Any]]:
        from tqdm import tqdm

        from benchmark import pipeline as P

        todo = cells_of(self.cfg)
        results = []
        bar = tqdm(todo, desc="cells", unit="cell", disable=not self.progress, file=sys.stderr, dynamic_ncols=True)
        for variant, model, seed in bar:
            bar.set_postfix_str(f"{model}/{variant}/seed{seed}")
            key = P.cell_key(self.cfg, variant, model, seed, self.keys)
            tags = {"variant": variant, "model": model, "seed": seed, "cell_key": key,
                    **{f"stage.{k}": v for k, v in self.keys.items()}}
            with tracker.child_run(f"{model}/{variant}/seed{seed}", params=P.cell_params(self.cfg, variant, model,
                                                                                         seed), tags=tags) as child:
                def on_epoch(epoch: int, metrics: dict[str, float], _child: Any = child) -> None:
                    _child.log_metrics(metrics, step=epoch)

                result, cached = self.train_or_load(variant, model, seed, side, on_epoch=on_epoch)
                if cached:  # replay the cached history so every invocation's child runs carry the curves
                    for h in result["history"]:
                        child.log_metrics({k: v for k, v in h.items() if k != "epoch"}, step=int(h["epoch"]))
                child.set_tags({"cached": str(cached).lower()})
                final = {f"test_{s}_{m}": v for s, ms in result["test"].items() for m, v in ms.items()}
                final |= {f"best_val_{m}": v for m, v in result["val_best"].items()}
                child.log_metrics({**final, "best_epoch": result["best_epoch"]})
            results.append(result)
        return results

    def _manifest(self, side: dict[str, Any], cells: list[dict[str, Any]], started: str) -> dict[str, Any]:
        from benchmark.tracking import git_sha

        cfg = self.cfg
        prepared = side["prepared"]
        align = dict(side["align"])
        return {
            "suite": cfg.suite.name + (f" [{self.label}]" if self.label else ""), "variants": list(cfg.suite.variants), "models": list(cfg.suite.models),
            "confidence": cfg.report.confidence,
            "provenance": {"config_hash": self.config_hash, "git_sha": git_sha(), "dataset": cfg.data.dataset,
                           "dataset_fingerprint": self.keys["data"], "split": cfg.data.split.kind,
                           "seeds": list(cfg.suite.seeds), "date": started, "version": __version__,
                           "stage_keys": dict(self.keys)},
            "config": to_plain(cfg),
            "data_stats": prepared.stats, "pair_stats": side["pair_stats"],
            "code_quality": {k: v for k, v in side["diagnostics"].items() if "collision_rate" in v},
            "alignment": {**align, "k": cfg.align.recall_k, "n_pairs": int(len(side["pairs"])),
                          "pair_sources": ", ".join(cfg.pairs.sources)},
            "cells": [{k: c[k] for k in ("model", "variant", "seed", "best_epoch", "val_best", "test", "key",
                                         "sim_search")} for c in cells],
        }

    def _report(self, manifest: dict[str, Any], parent: Any) -> str:
        from benchmark import plots
        from benchmark.report import parent_run_description, write_report
        from benchmark.report_html import write_html

        paths = plots.make_all(manifest, self.suite_dir / "plots")
        manifest["plots"] = [str(p.relative_to(self.suite_dir)) for p in paths]
        write_json(self.suite_dir / "results.json", manifest)
        md, rows = write_report(self.suite_dir, manifest)
        html = write_html(self.suite_dir, manifest, rows)
        for p in paths:
            parent.log_artifact(p, "plots")
        parent.log_artifact(self.suite_dir / "report.md")
        parent.log_artifact(self.suite_dir / "report.json")
        parent.log_artifact(html)
        parent.set_description(parent_run_description(self.cfg.suite.description, rows, self.cfg.suite.variants,
                                                      self.cfg.report.confidence))
        return md


def main_run(args: Any) -> int:
    runs = sweep_configs(args.config, args.overrides, args.quick)
    _check_force(args.force)
    cache = StageCache(runs[0][1].suite_dir / "artifacts", force=args.force)
    for i, (label, cfg) in enumerate(runs):
        if label:
            _say(f"== sweep {i + 1}/{len(runs)}: {label}")
        SuiteRun(cfg, label=label, cache=cache).run()
    return 0


def main_plan(args: Any) -> int:
    """List the stages and cells with their keys and cache state; computes nothing but the data fingerprint."""
    from benchmark import pipeline as P
    from benchmark.data.prepare import data_fingerprint

    for label, cfg in sweep_configs(args.config, args.overrides, args.quick):
        cache = StageCache(cfg.suite_dir / "artifacts")
        keys = P.stage_keys(cfg, data_fingerprint(cfg.data))
        print(f"suite {cfg.suite.name}{f' [{label}]' if label else ''}  config {stable_hash(cfg)}  dataset "
              f"{cfg.data.dataset} ({cfg.data.split.kind})  artifacts in {cache.root}")
        print("stages: " + " -> ".join(STAGES))
        data_cached = _data_cached(cache, cfg, keys["data"])
        for s in ("data", "pairs", "frozen", "align", "codes"):
            cached = data_cached if s == "data" else cache.is_cached(s, keys[s])
            print(f"  {s:<7} {keys[s][:16]}  {'cached' if cached else 'to run'}")
        cells = cells_of(cfg)
        n_cached = 0
        print(f"cells: {len(cfg.suite.variants)} variants x {len(cfg.suite.models)} models x "
              f"{len(cfg.suite.seeds)} seeds = {len(cells)}")
        for v, m, seed in cells:
            key = P.cell_key(cfg, v, m, seed, keys)
            cached = cache.is_cached("rank", key)
            n_cached += cached
            print(f"  {m:<5} {v:<17} seed {seed:<3} {key}  {'cached' if cached else 'to run'}")
        print(f"{n_cached}/{len(cells)} cells cached")
    return 0


def _data_cached(cache: StageCache, cfg: SuiteConfig, fp: str) -> bool:
    from benchmark.data.prepared import entry_dir

    return (entry_dir(cache.root / "data", cfg.data.dataset, fp) / "_SUCCESS").exists()
