"""Split seeds are an outer loop (data.split.seeds): each draws its own split and cold items (its own data entry),
every replicate seed runs within each (or, zipped, the replicate seed paired with it), and each cell records its
split seed; the primary family then takes the split seed as its unit. An empty list (the default) is the one
split of data.split.seed, with the keys it always had."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.config.suite import load_config, quicken, split_seed_configs
from benchmark.core.errors import ConfigError
from benchmark.engine.plan import render_plan, suite_plan


def _cfg(tmp: Path, *sets: str):
    return load_config("synthetic-tiny", [f"suite.runs_dir={tmp}", *sets])


def test_each_split_seed_is_a_single_split_suite_of_that_seed(tmp_path: Path) -> None:
    base = _cfg(tmp_path)
    assert split_seed_configs(base) == [(0, base)]
    two = _cfg(tmp_path, "data.split.seeds=[0, 3]")
    plan, plan0, plan3 = (suite_plan(two), suite_plan(base), suite_plan(_cfg(tmp_path, "data.split.seed=3")))
    # split seed s: the very entries and cells of a suite with data.split.seed = s (so no key moved)
    for split, single in ((0, plan0), (3, plan3)):
        assert [(e.stage, e.key) for e in plan.entries if e.split_seed == split] == \
            [(e.stage, e.key) for e in single.entries]
        assert [c.key for c in plan.cells if c.split_seed == split] == [c.key for c in single.cells]
    data = {e.split_seed: e.key for e in plan.entries if e.stage == "data"}
    assert data[0] != data[3]  # its own draw of cold items
    assert len(plan.cells) == 2 * len(plan0.cells)
    assert {c.key for c in plan.cells if c.split_seed == 0}.isdisjoint(c.key for c in plan.cells if c.split_seed == 3)
    text = render_plan(plan, two)
    assert "item side, split seed 3, replicate seed 1:" in text and " x 2 split seeds = " in text


def test_split_seeds_must_be_distinct(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.split.seeds"):
        _cfg(tmp_path, "data.split.seeds=[1, 1]")


def test_zipped_pairing_runs_split_seed_i_with_replicate_seed_i(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "data.split.seeds=[0, 5, 7]", "suite.seeds=[0, 1, 2]", "data.split.seed_pairing=zipped")
    assert [(s, c.suite.seeds, c.data.split.seed, c.data.split.seeds) for s, c in split_seed_configs(cfg)] == \
        [(0, (0,), 0, ()), (5, (1,), 5, ()), (7, (2,), 7, ())]
    plan = suite_plan(cfg)
    assert sorted({(c.split_seed, c.seed) for c in plan.cells}) == [(0, 0), (5, 1), (7, 2)]
    # the pair (5, 1) is the very cell of a crossed suite's split seed 5, replicate seed 1 (no key moved)
    crossed = suite_plan(_cfg(tmp_path, "data.split.seeds=[0, 5, 7]", "suite.seeds=[0, 1, 2]"))
    assert {c.key for c in plan.cells} < {c.key for c in crossed.cells}
    assert " x 3 (split seed, seed) pairs = " in render_plan(plan, cfg)
    quick = quicken(cfg)  # --quick: one pair
    assert (quick.suite.seeds, quick.data.split.seeds) == ((0,), (0,))


def test_zipped_pairing_needs_one_split_seed_per_replicate_seed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.split.seeds: seed_pairing = 'zipped'.*expected 3 split seeds"):
        _cfg(tmp_path, "data.split.seeds=[0, 5]", "suite.seeds=[0, 1, 2]", "data.split.seed_pairing=zipped")
    with pytest.raises(ConfigError, match="data.split.seed_pairing"):
        _cfg(tmp_path, "data.split.seed_pairing=paired")


@pytest.mark.slow
def test_every_cell_and_replicate_records_its_split_seed(tmp_path: Path) -> None:
    from benchmark.engine.suite import SuiteRun
    from benchmark.report.stats import paired_t

    cfg = _cfg(tmp_path, "data.split.seeds=[0, 5]", "suite.seeds=[0, 1]", 'suite.models=["dlrm"]',
               'suite.variants=["id_only", "aligned_codes"]', "align.epochs=2", "pairs.u2i.epochs=1",
               "quantize.rq_vae.epochs=1", "rank.epochs=1", f"suite.tracking_uri=sqlite:///{tmp_path / 'm.db'}")
    results = SuiteRun(cfg, progress=False).run()
    assert sorted((c.split_seed, c.seed, c.variant) for c in results.cells) == \
        [(s, r, v) for s in (0, 5) for r in (0, 1) for v in ("aligned_codes", "id_only")]
    assert [(r.split_seed, r.seed) for r in results.item_side] == [(0, 0), (0, 1), (5, 0), (5, 1)]
    assert results.provenance.split_seeds == (0, 5)
    assert set(results.split_data_stats) == {"0", "5"}
    assert results.split_data_stats["0"] == results.data_stats
    assert all(s["cold_items"] > 0 for s in results.split_data_stats.values())
    # the primary family's unit is the split seed: the t test runs over the 2 split means of the paired deltas
    auc = {(c.split_seed, c.seed, c.variant): c.test["all"]["auc"] for c in results.cells}
    split_means = [np.mean([auc[(s, r, "aligned_codes")] - auc[(s, r, "id_only")] for r in (0, 1)]) for s in (0, 5)]
    rec = next(r for r in results.primary["records"] if r["slice"] == "all")
    want = paired_t(split_means)
    assert (rec["unit"], rec["n_units"], rec["split_seeds"], rec["seeds"]) == ("split seed", 2, [0, 5], [0, 1])
    assert rec["delta"] == pytest.approx(want.delta) and rec["p"] == pytest.approx(want.p)
    assert rec["bootstrap_ci_low"] is not None  # the 3-stage bootstrap found every cell's test rows
    assert rec["bootstrap_delta"] == pytest.approx(want.delta, abs=1e-9)
