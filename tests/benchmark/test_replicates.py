"""A seed is a replicate of the whole item side: pair sampling, U2I, alignment and every quantizer take it
(suite.replicate = "full"), while the data split and the frozen encoder stay fixed; the same seed twice gives
the same artifacts bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.config.suite import load_config
from benchmark.core.cache import StageCache
from benchmark.itemside.runner import run_item_side
from benchmark.itemside.stages import item_side_keys


def _side(tmp: Path, seed: int):
    cfg = load_config("synthetic-tiny", [f"suite.runs_dir={tmp}", "align.epochs=2", "pairs.u2i.epochs=1",
                                         "quantize.rq_vae.epochs=2"])
    from benchmark.data.preparation import data_key

    keys = item_side_keys(cfg, data_key(cfg.data), seed)
    return keys, run_item_side(cfg, StageCache(tmp / "artifacts"), keys, progress=False)


@pytest.mark.slow
def test_replicate_seeds_reach_every_seeded_stage(tmp_path: Path) -> None:
    k0, a = _side(tmp_path / "a", 0)
    k1, b = _side(tmp_path / "a", 1)  # same cache: the unseeded entries (data, frozen) are shared
    k0_again, c = _side(tmp_path / "c", 0)  # another cache, same seed: recomputed, identical
    assert k0.stages["data"] == k1.stages["data"] and k0.stages["frozen"] == k1.stages["frozen"]
    assert a.data.train.equals(b.data.train)  # the split is fixed by data.split.seed
    assert not a.pairs.pairs.equals(b.pairs.pairs)  # the U2I model (and its triggers) take the seed
    assert not np.array_equal(a.align.embeddings, b.align.embeddings)
    for name in a.codes:
        assert not np.array_equal(a.codes[name].codes, b.codes[name].codes), name
    assert k0 == k0_again
    assert a.pairs.pairs.equals(c.pairs.pairs)
    assert np.array_equal(a.align.embeddings, c.align.embeddings)
    for name in a.codes:
        assert np.array_equal(a.codes[name].codes, c.codes[name].codes), name
