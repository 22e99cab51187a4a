"""Which cells a suite has and what its replicates are, and `qarm-bench plan`: the stages and (variant, model,
seed) cells of a suite with their keys and cache state, computed from the config alone (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.cells.plan import plan_cell
from benchmark.config.suite import SuiteConfig, split_seed_configs, sweep_configs
from benchmark.core.cache import StageCache
from benchmark.core.configlib import stable_hash
from benchmark.itemside.stages import ITEM_SIDE, STAGE_NAMES, item_side_keys


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


@dataclass(frozen=True)
class PlannedEntry:
    """One item-side entry of a replicate: stage ("codes/aligned_rq_kmeans" for a code set), key, cached, and the
    split seed whose data it reads."""

    replicate_seed: int
    stage: str
    key: str
    cached: bool
    split_seed: int = 0


@dataclass(frozen=True)
class PlannedCell:
    """One (variant, model, seed) cell under one split seed: its key, whether its result is cached, SIM's search
    unit."""

    variant: str
    model: str
    seed: int
    key: str
    cached: bool
    sim_search: str | None
    sim_search_codes: str | None
    split_seed: int = 0


@dataclass(frozen=True)
class SuitePlan:
    """What `run` would do for one suite (one sweep value): its entries and cells, computed from the config and
    the cache alone (nothing runs but the data fingerprint, which hashes the raw files)."""

    suite: str
    label: str
    config_hash: str
    dataset: str
    split: str
    artifacts: str
    entries: tuple[PlannedEntry, ...]
    cells: tuple[PlannedCell, ...]
    estimate: WallEstimate | None = None


# A guess of one training epoch's seconds per model on one CPU thread at MovieLens-100K scale, used only until a
# cell of that model has run in this suite (then its recorded epoch seconds, CellRecord.history, are used).
GUESS_EPOCH_SECONDS = {"dlrm": 10.0, "din": 30.0, "sim": 40.0}
GUESS_OTHER_MODEL_S = 30.0


@dataclass(frozen=True)
class WallEstimate:
    """The cells' training wall time `run` would take: each cell to run at most rank.epochs epochs, at the mean
    recorded epoch seconds of its model's cached cells (`measured` models) or GUESS_EPOCH_SECONDS (`guessed`),
    spread over the worker processes. The item-side stages are not counted."""

    seconds: float
    cells: int
    epochs: int
    workers: int
    measured: tuple[str, ...]
    guessed: tuple[str, ...]

    def render(self) -> str:
        if not self.cells:
            return "estimated wall time: 0 s (every cell is cached)"
        t = self.seconds
        when = f"{t:.0f} s" if t < 120 else f"{t / 60:.1f} min" if t < 7200 else f"{t / 3600:.1f} h"
        src = "; ".join(x for x in (
            f"from cached epoch timings: {', '.join(self.measured)}" if self.measured else "",
            f"per-model guess (no cached cell yet): {', '.join(self.guessed)}" if self.guessed else "") if x)
        return (f"estimated wall time: ~{when} for {self.cells} cell(s) to train (at most {self.epochs} epochs each, "
                f"{self.workers} worker(s); {src}; item-side stages not counted)")


def epoch_seconds_by_model(cache_root: Path) -> dict[str, float]:
    """Mean recorded seconds per epoch of each model over the cached cells under cache_root/rank."""
    from benchmark.core.cache import read_json
    from benchmark.core.records import CellRecord, from_json

    per: dict[str, list[float]] = {}
    for path in sorted((cache_root / "rank").glob("*/result.json")):
        if not (path.parent / "_SUCCESS").exists():
            continue
        try:
            record = from_json(CellRecord, read_json(path), path)
        except Exception:  # an unreadable or older record gives no timing; the guess stands in
            continue
        per.setdefault(record.model, []).extend(h.seconds for h in record.history if h.seconds > 0)
    return {m: sum(v) / len(v) for m, v in per.items() if v}


def wall_estimate(cfg: SuiteConfig, cells: list[PlannedCell], cache_root: Path) -> WallEstimate:
    todo = [c for c in cells if not c.cached]
    timed = epoch_seconds_by_model(cache_root) if todo else {}
    models = sorted({c.model for c in todo})
    total = sum(cfg.rank.epochs * timed.get(c.model, GUESS_EPOCH_SECONDS.get(c.model, GUESS_OTHER_MODEL_S))
                for c in todo)
    workers = max(1, min(cfg.workers, len(todo)))
    return WallEstimate(total / workers, len(todo), cfg.rank.epochs, workers,
                        tuple(m for m in models if m in timed), tuple(m for m in models if m not in timed))


def suite_plan(cfg: SuiteConfig, label: str = "") -> SuitePlan:
    from benchmark.data.preparation import data_key

    cache = StageCache(cfg.suite_dir / "artifacts")
    entries, cells = [], []
    for split, scfg in split_seed_configs(cfg):  # split seeds: the outer loop (data.split.seeds)
        dkey = data_key(scfg.data)
        keys = {rseed: item_side_keys(scfg, dkey, rseed) for rseed in replicate_seeds(scfg)}
        entries += [PlannedEntry(rseed, f"{stage.name}/{inst}" if inst else stage.name, k.key(stage.name, inst),
                                 cache.is_cached(stage.name, k.key(stage.name, inst)), split)
                    for rseed, k in keys.items() for stage in ITEM_SIDE for inst in stage.instances(scfg)]
        for v, m, seed in cells_of(scfg):
            plan = plan_cell(scfg, v, m, seed, keys[replicate_seed(scfg, seed)])
            cells.append(PlannedCell(v, m, seed, plan.key, cache.is_cached("rank", plan.key), plan.sim_search,
                                     plan.sim_search_codes, split))
    return SuitePlan(cfg.suite.name, label, stable_hash(cfg), cfg.data.dataset, cfg.data.split.kind, str(cache.root),
                     tuple(entries), tuple(cells), wall_estimate(cfg, cells, cache.root))


def render_plan(plan: SuitePlan, cfg: SuiteConfig) -> str:
    lines = [f"suite {plan.suite}{f' [{plan.label}]' if plan.label else ''}  config {plan.config_hash}  dataset "
             f"{plan.dataset} ({plan.split})  artifacts in {plan.artifacts}", "stages: " + " -> ".join(STAGE_NAMES)]
    splits = split_seed_configs(cfg)
    several = len(splits) > 1
    for split, scfg in splits:
        for rseed in replicate_seeds(scfg):
            lines.append(f"item side, {f'split seed {split}, ' if several else ''}replicate seed {rseed}:")
            lines += [f"  {e.stage:<24} {e.key[:16]}  {'cached' if e.cached else 'to run'}"
                      for e in plan.entries if e.replicate_seed == rseed and e.split_seed == split]
    zipped = several and cfg.data.split.seed_pairing == "zipped"
    seeds = (f"{len(splits)} (split seed, seed) pairs" if zipped else
             f"{len(cfg.suite.seeds)} seeds{f' x {len(splits)} split seeds' if several else ''}")
    lines.append(f"cells: {len(cfg.suite.variants)} variants x {len(cfg.suite.models)} models x {seeds} = "
                 f"{len(plan.cells)}")
    for c in plan.cells:
        search = f"  search {c.sim_search}:{c.sim_search_codes or '-'}" if c.sim_search else ""
        split_col = f"split {c.split_seed:<3} " if several else ""
        lines.append(f"  {c.model:<5} {c.variant:<17} {split_col}seed {c.seed:<3} {c.key}  "
                     f"{'cached' if c.cached else 'to run'}{search}")
    lines.append(f"{sum(c.cached for c in plan.cells)}/{len(plan.cells)} cells cached")
    if plan.estimate is not None:
        lines.append(plan.estimate.render())
    return "\n".join(lines)


def main_plan(args: Any, runs: list[tuple[str, SuiteConfig]] | None = None) -> int:
    """List the stages and cells with their keys and cache state; computes nothing but the data fingerprint."""
    for label, cfg in runs or sweep_configs(args.config, args.overrides, args.quick):
        print(render_plan(suite_plan(cfg, label), cfg))
    return 0
