"""Which cells a suite has and what its replicates are, and `qarm-bench plan`: the stages and (variant, model,
seed) cells of a suite with their keys and cache state, computed from the config alone (no torch)."""

from __future__ import annotations

from typing import Any

from benchmark.cells.plan import plan_cell
from benchmark.config.suite import SuiteConfig, sweep_configs
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


def main_plan(args: Any, runs: list[tuple[str, SuiteConfig]] | None = None) -> int:
    """List the stages and cells with their keys and cache state; computes nothing but the data fingerprint."""
    from benchmark.data.preparation import data_key

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
