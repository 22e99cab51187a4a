"""Issue 23: `qarm-bench plan`'s wall-time estimate covers the item-side entries as well as the cells: each entry to
compute at the mean compute seconds recorded in this suite's cached entries of its stage, else a guess scaled to
the data size; a suite never run is estimated near the default suite's measured wall time."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from benchmark.config.suite import load_config
from benchmark.core.cache import COMPUTE_SECONDS, META, SUCCESS, StageCache
from benchmark.engine.plan import (
    GUESS_EPOCH_SECONDS,
    GUESS_FLOOR_SECONDS,
    REFERENCE_INTERACTIONS,
    DataSize,
    guess_entry_seconds,
    render_plan,
    suite_plan,
)
from benchmark.itemside.stages import needed_code_sets


def test_a_computed_entry_records_its_compute_seconds(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)

    def compute(workdir: Path) -> int:
        time.sleep(0.05)
        return 1

    cache.load_or_compute("pairs", "k1", compute, lambda a, d: (d / "x.txt").write_text(str(a)),
                          lambda d: int((d / "x.txt").read_text()), meta={"instance": "", "seed": 0})
    meta = json.loads((cache.path("pairs", "k1") / META).read_text())
    assert meta[COMPUTE_SECONDS] >= 0.05 and meta["seed"] == 0
    assert cache.compute_seconds("pairs") == {"": [meta[COMPUTE_SECONDS]]}
    assert cache.done("pairs", "k1")  # _meta.json is in the content manifest like any file: the entry verifies


def _cached(cache: StageCache, stage: str, key: str, seconds: float | None, instance: str = "") -> None:
    entry = cache.path(stage, key)
    entry.mkdir(parents=True)
    meta = {"stage": stage, "key": key, "instance": instance}
    if seconds is not None:
        meta[COMPUTE_SECONDS] = seconds
    (entry / META).write_text(json.dumps(meta))
    (entry / SUCCESS).write_text("{}")


def test_plan_estimates_entries_to_compute_from_the_suite_s_cached_timings(tmp_path: Path) -> None:
    cfg = load_config("synthetic-tiny", [f"suite.runs_dir={tmp_path}", "suite.workers=2"])
    cache = StageCache(cfg.suite_dir / "artifacts")
    first = suite_plan(cfg)
    key = {(e.replicate_seed, e.stage): e.key for e in first.entries}
    # the data entry is cached, with the sizes the guesses scale to
    _cached(cache, "data", key[0, "data"], 1.0)
    (cache.path("data", key[0, "data"]) / "meta.json").write_text(
        json.dumps({"stats": {"items": 1200, "impressions": 30_000}}))
    # replicate seed 0's pairs, align and one code set are cached with timings; one more entry of that code set
    # (another config's) is timed too, and a frozen entry of an older version records none
    _cached(cache, "pairs", key[0, "pairs"], 7.0)
    _cached(cache, "align", key[0, "align"], 3.0)
    _cached(cache, "codes", key[0, "codes/aligned_rq_kmeans"], 2.0, "aligned_rq_kmeans")
    _cached(cache, "codes", "another-config", 4.0, "aligned_rq_kmeans")
    _cached(cache, "frozen", "older-entry", None)

    plan = suite_plan(cfg)
    est = plan.estimate
    assert est is not None and est.size is not None
    assert (est.size.items, est.size.interactions, est.size.source) == (1200, 30_000, "the cached data entry")
    by = {s.stage: s for s in est.stages}
    assert "data" not in by  # cached: nothing to estimate
    # seed 1's pairs and align: the cached entries' seconds (measured)
    assert (by["pairs"].entries, by["pairs"].seconds, by["pairs"].measured) == (1, 7.0, 1)
    assert (by["align"].entries, by["align"].seconds, by["align"].measured) == (1, 3.0, 1)
    # frozen (shared by both replicates: one entry): no timing recorded anywhere, so the guess, scaled by items
    assert by["frozen"].measured == 0 and by["frozen"].entries == 1
    assert by["frozen"].seconds == pytest.approx(6.4 * 1200 / 1682)
    # codes: every code set of both replicates but seed 0's aligned_rq_kmeans; seed 1's aligned_rq_kmeans at
    # mean(2, 4) = 3 s, the others guessed (RQ-VAE 1.1 s, the rest 0.2 s at 1,682 items, scaled to 1,200)
    todo = [e.stage.partition("/")[2] for e in plan.entries if e.stage.startswith("codes/") and not e.cached]
    assert len(todo) == by["codes"].entries == 2 * len(needed_code_sets(cfg)) - 1
    guessed = [guess_entry_seconds(cfg, "codes", n, est.size) for n in todo if n != "aligned_rq_kmeans"]
    assert by["codes"].measured == 1
    assert by["codes"].seconds == pytest.approx(3.0 + sum(guessed))
    assert guess_entry_seconds(cfg, "codes", "frozen_rq_vae", est.size) == pytest.approx(1.1 * 1200 / 1682)
    assert guess_entry_seconds(cfg, "codes", "frozen_rq_kmeans.fsq", est.size) == pytest.approx(0.2 * 1200 / 1682)
    # an entry's fixed costs: no guess below what synthetic-tiny's entry took (GUESS_FLOOR_SECONDS)
    tiny = DataSize(90, 3_000, "test")
    assert guess_entry_seconds(cfg, "pairs", "", tiny) == GUESS_FLOOR_SECONDS["pairs"] == 4.1
    assert guess_entry_seconds(cfg, "pairs", "", est.size) == 4.1  # 4.3 s x 0.3 = 1.29 s: below the floor
    item = 7.0 + 3.0 + 6.4 * 1200 / 1682 + 3.0 + sum(guessed)
    assert est.item_seconds == pytest.approx(item)
    # cells: none cached, so 2 epochs x the per-model guess scaled to 30,000 interactions, over 2 workers
    scale = 30_000 / REFERENCE_INTERACTIONS
    cells = sum(2 * scale * GUESS_EPOCH_SECONDS[c.model] for c in plan.cells) / 2
    assert est.cell_seconds == pytest.approx(cells) and est.guessed == ("din", "dlrm", "sim")
    assert est.seconds == pytest.approx(item + cells)
    text = render_plan(plan, cfg)
    assert "item side ~" in text and "+ cells ~" in text and "not counted" not in text
    assert f"(at most: with {est.workers} workers" in text and est.workers == 2  # cells overlap the item side
    assert "pairs 1 x ~7.0 s (measured)" in text and "frozen 1 x ~4.6 s (guessed)" in text
    assert f"codes {len(todo)} x ~" in text and "(1 measured)" in text
    assert "30,000 interactions and 1,200 items (the cached data entry)" in text


def test_a_fully_cached_suite_estimates_nothing(tmp_path: Path) -> None:
    cfg = load_config("synthetic-tiny", [f"suite.runs_dir={tmp_path}", "suite.seeds=[0]", 'suite.models=["dlrm"]',
                                         'suite.variants=["id_only"]'])
    cache = StageCache(cfg.suite_dir / "artifacts")
    plan = suite_plan(cfg)
    for e in plan.entries:
        stage, _, inst = e.stage.partition("/")
        if not cache.is_cached(stage, e.key):
            _cached(cache, stage, e.key, 1.0, inst)
    _cached(cache, "rank", plan.cells[0].key, None)
    est = suite_plan(cfg).estimate
    assert est is not None and est.seconds == 0 and not est.stages and not est.cells
    assert est.render() == "estimated wall time: 0 s (every item-side entry and every cell is cached)"


# The default suite (movielens-100k: 60 cells, 3 full replicates) measured from an empty runs folder on this
# project's 2-core machine, 2 workers: 5 min 47 s in all, item side included (docs/results.md, 2026-12-05).
MEASURED_DEFAULT_SUITE_S = 5 * 60 + 47
TOLERANCE = 1.5  # the never-run guess must land within this factor of the measured figure


@pytest.mark.skipif(importlib.util.find_spec("recbole") is None, reason="MovieLens-100K comes with recbole")
def test_a_never_run_default_suite_is_estimated_near_its_measured_wall_time(tmp_path: Path) -> None:
    # the measured run had 3 replicates (the default suite has 5 since): the same suite at 3
    cfg = load_config("movielens-100k", [f"suite.runs_dir={tmp_path}", "suite.seeds=[0, 1, 2]"])
    est = suite_plan(cfg).estimate
    assert est is not None and est.cells == 60 and not est.measured and not any(s.measured for s in est.stages)
    assert est.size is not None and (est.size.items, est.size.interactions) == (1682, 100_000)
    assert MEASURED_DEFAULT_SUITE_S / TOLERANCE <= est.seconds <= MEASURED_DEFAULT_SUITE_S * TOLERANCE
    assert 0 < est.item_seconds < est.cell_seconds
