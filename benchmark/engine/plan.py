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


# ---- the wall-time estimate ------------------------------------------------------------------------------------
# Where the guesses come from: the default suite (benchmark/configs/movielens-100k.toml: MovieLens-100K, 100,000
# interactions, 1,682 items), 60 cells + 3 item sides, ran from an empty runs folder in 5 min 47 s (347 s) on this
# project's 2-core CPU machine with 2 worker processes of 1 thread (docs/results.md, "The default suite, measured",
# 2026-12-05). Its status lines: the item side took 45 s in all (the per-entry seconds below, means over its 3
# replicates), the cells bar 279 s, imports, MLflow, the primary bootstrap and the report the other 23 s.
# A guess is that machine's seconds at that size, scaled linearly to the suite's data size (docs/scale.md measures
# time exponents of 1.1 to 1.3 in the interactions, so far above 100,000 it errs low), an item-side entry's no lower
# than GUESS_FLOOR_SECONDS.
REFERENCE_INTERACTIONS = 100_000
REFERENCE_ITEMS = 1_682

# Seconds per epoch of rank.epochs per cell at the reference size, the run's fixed costs included: (347 s - 45 s of
# item side) x 2 workers / 60 cells / 5 epochs = 2.0 s, split between DLRM and SIM in the ratio of their recorded
# epoch seconds in that run (SIM 1.2x DLRM): 1.8 and 2.2 s. DIN: 1.1x to 1.2x the mean DLRM/SIM cell (an earlier
# measurement: movielens-100k-all-rankers, 90 cells in 24.2 min, against the default's 60 in 15.6 min, with or
# without its item side; docs/results.md), taken as 1.2 x 2.0 = 2.4 s.
# Used only until a cell of that model has run in this suite (then its recorded epoch seconds, CellRecord.history).
GUESS_EPOCH_SECONDS = {"dlrm": 1.8, "din": 2.4, "sim": 2.2}
GUESS_OTHER_MODEL_S = 2.4

# A pooled model (DLRM) over a VQ bag pools k item tokens per history item (k = 25 by default) for the bag of every
# history position: a DLRM cell with the aligned VQ bag took 7.8 s against 1.5-1.6 s for its RQ-code cells (MovieLens-100K
# --quick, one epoch, one thread, 2026-12-06). Used to start such cells first among those ready (CellScheduler).
GUESS_POOLED_VQ_FACTOR = 5.0


def cell_cost(model: str, code_sets: list[str | None], epoch_seconds: dict[str, float] | None = None) -> float:
    """The expected seconds per epoch of one cell, for ordering the cells ready to train (the costliest first):
    the model's recorded epoch seconds when given, else GUESS_EPOCH_SECONDS; times GUESS_POOLED_VQ_FACTOR for a
    pooled-layout model reading a VQ code set (`code_sets`: the plan's code_set and vq_set)."""
    from benchmark.itemside.compute import parse_code_set
    from recsys_models.config import batch_layout

    base = (epoch_seconds or {}).get(model, GUESS_EPOCH_SECONDS.get(model, GUESS_OTHER_MODEL_S))
    vq = any(n is not None and parse_code_set(n)[1] == "vq" for n in code_sets)
    return base * (GUESS_POOLED_VQ_FACTOR if vq and batch_layout(model) == "pooled" else 1.0)


# Seconds per item-side entry at the reference size, and what each scales with: data 0.4 s, pairs (U2I towers +
# Swing) 4.3 s and align (20 epochs, a head over cached MiniLM outputs) 4.6 s with the interactions; frozen 6.4 s
# (MiniLM over 1,682 titles; an image modality is guessed the same) per modality and a code set 0.2 s (RQ-VAE:
# 1.1 s) with the items. The synthetic encoder (encoder.kind = "synthetic") draws vectors: 0.1 s at 20,000 items
# (docs/scale.md). Used only until an entry of the same stage (a code set: of the same name) has been computed in
# this suite (then its recorded compute seconds, `compute_seconds` in the entry's _meta.json).
GUESS_STAGE_SECONDS = {"data": 0.4, "pairs": 4.3, "align": 4.6}
GUESS_OTHER_STAGE_S = 4.6
GUESS_FROZEN_S_PER_MODALITY = 6.4
GUESS_SYNTHETIC_FROZEN_S = 0.01
GUESS_CODE_SET_S = 0.2
GUESS_RQ_VAE_CODE_SET_S = 1.1
# An entry's fixed costs do not shrink with the data: a guess is at least what the entry took on synthetic-tiny
# (3,000 interactions, 90 items; the same machine, 2026-12-05, while another job ran): data 0.25 s, pairs 4.1 s,
# frozen 3.5 s (loading MiniLM, most of it), align 1.8 s, a code set 0.07 s (the median of its 10).
GUESS_FLOOR_SECONDS = {"data": 0.25, "pairs": 4.1, "frozen": 3.5, "align": 1.8, "codes": 0.07}


@dataclass(frozen=True)
class DataSize:
    """The data size the guesses are scaled to, and where it comes from, in words."""

    items: int
    interactions: int
    source: str


@dataclass(frozen=True)
class StageEstimate:
    """The item-side entries of one stage to compute: how many, their estimated seconds, and how many of them were
    timed from this suite's cached entries (the rest guessed)."""

    stage: str
    entries: int
    seconds: float
    measured: int


@dataclass(frozen=True)
class WallEstimate:
    """The wall time `run` would take: the item-side entries to compute, one after another (each at the mean
    recorded compute seconds of this suite's cached entries of its stage, else a guess scaled to `size`), then the
    cells, each to run at most rank.epochs epochs at the mean recorded epoch seconds of its model's cached cells
    (`measured` models) or GUESS_EPOCH_SECONDS scaled to `size` (`guessed`), spread over the worker processes.
    `seconds` = `item_seconds` + `cell_seconds`: with several workers a bound from above, since a cell whose
    item-side entries are finished trains while the rest of the item side is computed (engine.pool)."""

    seconds: float
    cells: int
    epochs: int
    workers: int
    measured: tuple[str, ...]
    guessed: tuple[str, ...]
    cell_seconds: float = 0.0
    stages: tuple[StageEstimate, ...] = ()
    size: DataSize | None = None

    @property
    def item_seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    def render(self) -> str:
        if not self.cells and not self.stages:
            return "estimated wall time: 0 s (every item-side entry and every cell is cached)"
        lines = [f"estimated wall time: ~{_duration(self.seconds)} in all = item side ~{_duration(self.item_seconds)}"
                 f" + cells ~{_duration(self.cell_seconds)}"
                 + (f" (at most: with {self.workers} workers, cells whose item-side entries are finished train "
                    "while the rest of the item side is computed)" if self.workers > 1 and self.cells and self.stages
                    else "")]
        size = self.size or DataSize(REFERENCE_ITEMS, REFERENCE_INTERACTIONS, "MovieLens-100K's assumed")
        if self.stages:
            per = ", ".join(f"{s.stage} {s.entries} x ~{_duration(s.seconds / s.entries)} "
                            f"({_source(s.measured, s.entries)})" for s in self.stages)
            how = [*(["measured = the mean recorded compute seconds of this suite's cached entries of the stage"]
                     if any(s.measured for s in self.stages) else []),
                   *([f"guessed = the default suite's seconds on 2 cores scaled to {size.interactions:,} interactions "
                      f"and {size.items:,} items ({size.source}), no lower than synthetic-tiny's"]
                     if any(s.measured < s.entries for s in self.stages) else [])]
            lines.append(f"  item side: {sum(s.entries for s in self.stages)} entries to compute, one after another: "
                         f"{per}; {'; '.join(how)}")
        else:
            lines.append("  item side: every entry is cached")
        if self.cells:
            src = "; ".join(x for x in (
                f"from cached epoch timings: {', '.join(self.measured)}" if self.measured else "",
                f"per-model guess (no cached cell yet; the default suite's epoch seconds on 2 cores scaled to "
                f"{size.interactions:,} interactions): {', '.join(self.guessed)}" if self.guessed else "")
                if x)
            lines.append(f"  cells: {self.cells} to train (at most {self.epochs} epochs each, {self.workers} "
                         f"worker(s)); {src}")
        else:
            lines.append("  cells: every cell is cached")
        return "\n".join(lines)


def _duration(t: float) -> str:
    return (f"{t:.1f} s" if t < 10 else f"{t:.0f} s" if t < 120 else f"{t / 60:.1f} min" if t < 7200
            else f"{t / 3600:.1f} h")


def _source(measured: int, entries: int) -> str:
    return "measured" if measured == entries else "guessed" if not measured else f"{measured} measured"


def data_size(cfg: SuiteConfig, data_keys: list[str], cache: StageCache) -> DataSize:
    """The suite's items and interactions: from a cached data entry of the suite, else the synthetic preset, else
    the dataset card's `expected` sizes, else MovieLens-100K's (said so)."""
    from benchmark.config.data import synthetic_sizes
    from benchmark.core.cache import SUCCESS, read_json

    for key in data_keys:
        entry = cache.path("data", key)
        try:
            stats = read_json(entry / "meta.json")["stats"] if (entry / SUCCESS).exists() else {}
            return DataSize(int(stats["items"]), int(stats["impressions"]), "the cached data entry")
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if cfg.data.dataset == "synthetic":
        _, items, interactions, _ = synthetic_sizes(cfg.data.synthetic)
        return DataSize(items, interactions, f"synthetic preset {cfg.data.synthetic.size!r}")
    try:
        from benchmark.data import registry

        expected = registry.load_card(registry.get(cfg.data.dataset)).get("expected", {})
        return DataSize(int(expected["items"]), int(expected["impressions"]), "the dataset card")
    except Exception:  # no card, or one without sizes: the reference size stands in, said so
        return DataSize(REFERENCE_ITEMS, REFERENCE_INTERACTIONS,
                        "size unknown until the data stage has run: MovieLens-100K's assumed")


def guess_entry_seconds(cfg: SuiteConfig, stage: str, instance: str, size: DataSize) -> float:
    """The guessed compute seconds of one item-side entry: GUESS_STAGE_SECONDS and the like scaled to `size`, at
    least GUESS_FLOOR_SECONDS."""
    items, interactions = size.items / REFERENCE_ITEMS, size.interactions / REFERENCE_INTERACTIONS
    if stage == "frozen" and cfg.encoder.kind == "synthetic":
        return GUESS_SYNTHETIC_FROZEN_S * items  # no model to load: no floor
    if stage == "frozen":
        scaled = GUESS_FROZEN_S_PER_MODALITY * len(cfg.encoder.modalities) * items
    elif stage == "codes":
        scaled = (GUESS_RQ_VAE_CODE_SET_S if "_rq_vae" in instance.split(".")[0] else GUESS_CODE_SET_S) * items
    else:
        scaled = GUESS_STAGE_SECONDS.get(stage, GUESS_OTHER_STAGE_S) * interactions
    return max(scaled, GUESS_FLOOR_SECONDS.get(stage, 0.0))


def item_side_estimate(cfg: SuiteConfig, entries: list[PlannedEntry] | tuple[PlannedEntry, ...], cache: StageCache,
                       size: DataSize) -> tuple[StageEstimate, ...]:
    """Per stage, the entries to compute (an entry shared by replicates, e.g. frozen, counted once) and their
    seconds: the mean recorded compute seconds of the suite's cached entries of the same stage and instance, else
    the guess."""
    todo = dict.fromkeys((e.stage, e.key) for e in entries if not e.cached)
    timed = {s.name: cache.compute_seconds(s.name) for s in ITEM_SIDE} if todo else {}
    per: dict[str, list[tuple[float, bool]]] = {}
    for label, _ in todo:
        stage, _, instance = label.partition("/")
        got = timed.get(stage, {}).get(instance)
        per.setdefault(stage, []).append((sum(got) / len(got), True) if got else
                                         (guess_entry_seconds(cfg, stage, instance, size), False))
    return tuple(StageEstimate(stage, len(v), sum(t for t, _ in v), sum(m for _, m in v))
                 for stage in STAGE_NAMES if (v := per.get(stage)))


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


def wall_estimate(cfg: SuiteConfig, cells: list[PlannedCell], cache_root: Path,
                  entries: list[PlannedEntry] | tuple[PlannedEntry, ...] = (), size: DataSize | None = None
                  ) -> WallEstimate:
    """The estimate of `run`'s wall time for the cells and item-side entries not cached (see WallEstimate)."""
    size = size or DataSize(REFERENCE_ITEMS, REFERENCE_INTERACTIONS, "MovieLens-100K's assumed")
    todo = [c for c in cells if not c.cached]
    timed = epoch_seconds_by_model(cache_root) if todo else {}
    models = sorted({c.model for c in todo})
    scale = size.interactions / REFERENCE_INTERACTIONS
    total = sum(cfg.rank.epochs * timed.get(c.model, scale * GUESS_EPOCH_SECONDS.get(c.model, GUESS_OTHER_MODEL_S))
                for c in todo)
    workers = max(1, min(cfg.workers, len(todo)))
    stages = item_side_estimate(cfg, entries, StageCache(cache_root), size)
    cell_seconds = total / workers
    return WallEstimate(sum(s.seconds for s in stages) + cell_seconds, len(todo), cfg.rank.epochs, workers,
                        tuple(m for m in models if m in timed), tuple(m for m in models if m not in timed),
                        cell_seconds, stages, size)


def suite_plan(cfg: SuiteConfig, label: str = "") -> SuitePlan:
    from benchmark.data.preparation import data_key

    cache = StageCache(cfg.suite_dir / "artifacts")
    entries, cells, dkeys = [], [], []
    for split, scfg in split_seed_configs(cfg):  # split seeds: the outer loop (data.split.seeds)
        dkey = data_key(scfg.data)
        dkeys.append(dkey)
        keys = {rseed: item_side_keys(scfg, dkey, rseed) for rseed in replicate_seeds(scfg)}
        entries += [PlannedEntry(rseed, f"{stage.name}/{inst}" if inst else stage.name, k.key(stage.name, inst),
                                 cache.is_cached(stage.name, k.key(stage.name, inst)), split)
                    for rseed, k in keys.items() for stage in ITEM_SIDE for inst in stage.instances(scfg)]
        for v, m, seed in cells_of(scfg):
            plan = plan_cell(scfg, v, m, seed, keys[replicate_seed(scfg, seed)])
            cells.append(PlannedCell(v, m, seed, plan.key, cache.is_cached("rank", plan.key), plan.sim_search,
                                     plan.sim_search_codes, split))
    return SuitePlan(cfg.suite.name, label, stable_hash(cfg), cfg.data.dataset, cfg.data.split.kind, str(cache.root),
                     tuple(entries), tuple(cells),
                     wall_estimate(cfg, cells, cache.root, entries, data_size(cfg, dkeys, cache)))


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
    configs = runs or sweep_configs(args.config, args.overrides, args.quick)
    for label, cfg in configs:
        print(render_plan(suite_plan(cfg, label), cfg))
    if len(configs) > 1:
        print(f"sweep: {len(configs)} values, one plan each above; their estimates do not add up: each counts what "
              "is not cached now, so the stages the values share (those their setting leaves alone: the data, "
              "usually the pairs and the alignment; one stage cache) are counted in each, and run once")
    return 0
