"""One cell, trained or loaded: `train_or_load(cfg, cache, side, variant, model, seed, ...) -> (CellRecord,
cached)`. The cell's plan decides what it reads (benchmark.cells.plan); every rank of a world trains it, or
none (rank 0's view of the cache decides); rank 0 writes the entry."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

from benchmark.cells.plan import plan_cell
from benchmark.config.suite import SuiteConfig
from benchmark.core.cache import StageCache, read_json
from benchmark.core.records import CellRecord, from_json, to_json
from benchmark.core.world import World
from benchmark.itemside.runner import ItemSide


def train_or_load(cfg: SuiteConfig, cache: StageCache, side: ItemSide, variant: str, model: str, seed: int, *,
                  device: Any, world: World | None = None, progress: bool = False,
                  on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> tuple[CellRecord, bool]:
    """A cell's result, trained unless its entry is cached. side: the item side of the cell's replicate."""
    world = world or World()
    plan = plan_cell(cfg, variant, model, seed, side.keys)
    if world.agree(cache.done("rank", plan.key) if world.is_main else None):
        path = cache.path("rank", plan.key) / "result.json"
        return dataclasses.replace(from_json(CellRecord, read_json(path), path), split_seed=plan.split_seed), True
    from benchmark.cells.inputs import cell_inputs
    from benchmark.cells.train import train_cell
    from benchmark.dist.launch import check_fault_injection

    world.where = f"cell {model}/{variant}/seed{seed}"
    check_fault_injection(world, world.where)
    inputs = cell_inputs(plan, side, cfg.rank.embedding_dim, cfg.quantize.tokens)
    # per-epoch bar (running loss, samples/s) only on a terminal: in a log file it would be noise
    res = train_cell(model, inputs, cfg.rank, seed, on_epoch=on_epoch, progress=progress and sys.stderr.isatty(),
                     device=device, world=world)
    record = CellRecord(model=model, variant=variant, seed=seed, key=plan.key, best_epoch=res.best_epoch,
                        val_best=res.val_best, test=res.test, history=res.history, sim_search=plan.sim_search,
                        sim_search_codes=plan.sim_search_codes, test_bootstrap=res.test_bootstrap,
                        n_embedding_parameters=res.n_embedding_parameters,
                        n_dense_parameters=res.n_dense_parameters, replicate_seed=plan.replicate_seed,
                        split_seed=plan.split_seed, val_slices=res.val_slices)
    if not world.is_main:  # every rank trained the cell; rank 0 writes it
        return record, False
    assert res.test_predictions is not None  # rank 0 holds them
    with cache.writing("rank", plan.key, {"variant": variant, "model": model, "seed": seed}) as d:
        (d / "result.json").write_text(json.dumps(to_json(record), default=float))
        res.test_predictions.write_parquet(d / "test_predictions.parquet")
    return record, False
