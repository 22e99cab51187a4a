"""The primary family of a run, computed at its end (issue 20): the report reads results.json only, and the
hierarchical bootstrap of a primary contrast needs every cell's test rows, so the engine computes the family
here and stores it in SuiteResults.primary.

    primary_test_rows(cache, cells, items_of, hypothesis, models)   (model, variant, slice, (split seed, seed))
                                                                    -> ScoredRows,
                                                                    and the cells whose rows are missing
    compute_primary(cfg, cache, cells, items_of, warn)              -> PrimaryFamily | None

A cell's test rows are its rank entry's test_predictions.parquet (user_idx, item_idx, label, pred; written by
benchmark.engine.cell), read through the stage cache and cut into the primary slices by the item frame of the
cell's replicate (is_cold).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl

from benchmark.config.suite import SuiteConfig, primary_contrasts
from benchmark.core.cache import StageCache
from benchmark.core.records import CellRecord
from benchmark.report.primary import (
    PrimaryFamily,
    PrimaryHypothesis,
    family_models,
    hypothesis_of,
    primary_bootstrap,
    primary_family,
    seed_values,
)
from benchmark.report.stats import ScoredRows, Unit

BOOTSTRAP_SEED = 0  # the primary bootstrap's seed: the same draws on every rerun of a suite


def slice_filter(slice_name: str) -> pl.Expr:
    """The rows of a primary slice (benchmark.config.suite.PRIMARY_SLICES), on a frame with `is_cold`."""
    return {"all": pl.lit(True), "cold": pl.col("is_cold"), "warm": ~pl.col("is_cold")}[slice_name]


def primary_test_rows(cache: StageCache, cells: Sequence[CellRecord],
                      items_of: Callable[[int, int], pl.DataFrame], hypothesis: PrimaryHypothesis,
                      models: Sequence[str]) -> tuple[dict[tuple[str, str, str, Unit], ScoredRows], list[CellRecord]]:
    """(model, variant, slice, (split seed, replicate seed)) -> the cell's test rows of the slice, for every cell
    a primary test reads, and the cells whose rank entry holds no test rows (an entry written before they were
    saved). items_of(split_seed, seed): the items frame (item_idx, is_cold) of the cell's replicate under its
    split (each split seed draws its own cold items)."""
    wanted = {(m, v) for m in family_models(hypothesis, models) for c in hypothesis.contrasts
              for v in (c.variant, c.baseline)}
    out, missing = {}, []
    for cell in cells:
        if (cell.model, cell.variant) not in wanted:
            continue
        path = cache.path("rank", cell.key) / "test_predictions.parquet"
        if not cache.is_cached("rank", cell.key) or not path.is_file():
            missing.append(cell)
            continue
        frame = pl.read_parquet(path).join(items_of(cell.split_seed, cell.seed).select("item_idx", "is_cold"), on="item_idx",
                                           how="left", maintain_order="left")
        for s in hypothesis.slices:
            f = frame.filter(slice_filter(s))
            out[(cell.model, cell.variant, s, (cell.split_seed, cell.seed))] = ScoredRows(
                f["user_idx"].to_numpy(), f["item_idx"].to_numpy(), f["label"].to_numpy(), f["pred"].to_numpy())
    return out, missing


def compute_primary(cfg: SuiteConfig, cache: StageCache, cells: Sequence[CellRecord],
                    items_of: Callable[[int, int], pl.DataFrame],
                    warn: Callable[[str], None] = lambda _: None) -> PrimaryFamily | None:
    """The suite's primary family with the hierarchical bootstrap (report.bootstrap_draws draws, seeded) of every
    test; None when the suite declares none (benchmark.config.suite.primary_contrasts is empty). A cell without
    test rows leaves its seed out of the bootstrap of the tests that read it (warned: rerun with --force rank);
    the family, its t tests and its size do not change."""
    h = hypothesis_of(cfg.report, primary_contrasts(cfg))
    if h is None:
        return None
    models = tuple(cfg.suite.models)
    rows, missing = primary_test_rows(cache, cells, items_of, h, models)
    if missing:
        warn(f"[primary] {len(missing)} cell(s) have no cached test rows (e.g. {missing[0].model}/"
             f"{missing[0].variant}/seed{missing[0].seed}): their seeds are left out of the bootstrap; rerun with "
             "--force rank to include them")
    # the run's cores: its worker processes are done by now (figures do not depend on jobs)
    boot = primary_bootstrap(h, rows, models, n_boot=cfg.report.bootstrap_draws, seed=BOOTSTRAP_SEED,
                             jobs=max(1, cfg.workers * cfg.threads))
    return primary_family(h, seed_values(cells, h.metric), models, bootstrap=boot)
