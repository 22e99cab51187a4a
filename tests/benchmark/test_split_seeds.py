"""Split seeds are an outer loop (data.split.seeds): each draws its own split and cold items (its own data entry),
every replicate seed runs within each, and each cell records its split seed. An empty list (the default) is the
one split of data.split.seed, with the keys it always had."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.config.suite import load_config, split_seed_configs
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


@pytest.mark.slow
def test_every_cell_and_replicate_records_its_split_seed(tmp_path: Path) -> None:
    from benchmark.engine.suite import SuiteRun

    cfg = _cfg(tmp_path, "data.split.seeds=[0, 5]", "suite.seeds=[0]", 'suite.models=["dlrm"]',
               'suite.variants=["id_only", "aligned_codes"]', "align.epochs=2", "pairs.u2i.epochs=1",
               "quantize.rq_vae.epochs=1", "rank.epochs=1", f"suite.tracking_uri=sqlite:///{tmp_path / 'm.db'}")
    results = SuiteRun(cfg, progress=False).run()
    assert sorted((c.split_seed, c.variant) for c in results.cells) == \
        [(0, "aligned_codes"), (0, "id_only"), (5, "aligned_codes"), (5, "id_only")]
    assert [(r.split_seed, r.seed) for r in results.item_side] == [(0, 0), (5, 0)]
    assert results.provenance.split_seeds == (0, 5)
    assert set(results.split_data_stats) == {"0", "5"}
    assert results.split_data_stats["0"] == results.data_stats
    assert all(s["cold_items"] > 0 for s in results.split_data_stats.values())
