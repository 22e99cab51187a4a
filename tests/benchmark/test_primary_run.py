"""The primary hypothesis end to end without training: declared in [report], computed by the engine from the
cells' cached test rows (benchmark.engine.primary), stored in results.json, printed first by the report, logged
to the parent run. Fabricated cells whose deltas are known by construction."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmark.config.suite import load_config, primary_contrasts
from benchmark.core.cache import StageCache
from benchmark.core.configlib import from_mapping, to_plain
from benchmark.core.errors import ConfigError
from benchmark.core.records import CellRecord, Provenance, SuiteResults, from_json, to_json
from benchmark.engine.environment import cpu_model, math_stack
from benchmark.engine.logs import log_primary
from benchmark.engine.primary import compute_primary
from benchmark.report.headline import parent_run_description
from benchmark.report.primary import PrimaryFamily, results_family
from benchmark.report.tables import aggregate
from benchmark.report.write import write_report

SEEDS = (0, 1, 2)
N_USERS, N_ITEMS = 40, 12
COLD = np.arange(N_ITEMS) < 4  # items 0..3 are cold


def _cfg(*overrides: str):
    return load_config("synthetic-tiny", ["suite.models=dlrm", *overrides])


# ---- config ------------------------------------------------------------------------------------------------


def test_the_default_declaration_keeps_the_contrasts_the_suite_runs() -> None:
    cfg = _cfg()
    assert primary_contrasts(cfg) == (("aligned_codes", "id_only"),)  # synthetic-tiny runs no frozen / controls
    r = cfg.report
    assert r.equivalence_margin == 0.002 and r.target_effect == {"all": 0.005, "cold": 0.01}
    assert r.primary.slices == ("all", "cold") and r.primary.metric == "auc" and r.bootstrap_draws >= 2000
    full = load_config(None)  # the default suite runs all four
    assert [f"{a} - {b}" for a, b in primary_contrasts(full)] == list(full.report.primary.contrasts)
    none = _cfg("suite.variants=id_only,codes_only")
    assert primary_contrasts(none) == ()


def test_contrasts_are_strings_or_pairs(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('extends = "synthetic-tiny"\n[report.primary]\n'
                    'contrasts = ["aligned_codes - id_only", ["codes_only", "id_only"]]\nslices = ["all"]\n')
    cfg = load_config(path)
    assert primary_contrasts(cfg) == (("aligned_codes", "id_only"), ("codes_only", "id_only"))


@pytest.mark.parametrize(("override", "message"), [
    ("report.primary.contrasts=aligned_codes - frozen_codes", r"report\.primary\.contrasts\[0\]: 'frozen_codes' is "
                                                              "not one of suite.variants"),
    ("report.primary.contrasts=aligned_codes - nope", r"report\.primary\.contrasts: unknown variant 'nope'"),
    ("report.primary.contrasts=aligned_codes", r"report\.primary\.contrasts: expected a non-empty list"),
    ("report.primary.contrasts=id_only - id_only", r"report\.primary\.contrasts: expected distinct contrasts"),
    ("report.primary.models=sim", r"report\.primary\.models\[0\]: expected one of suite\.models \(dlrm\)"),
    ("report.primary.slices=all,pop_bucket_0", r"report\.primary\.slices: expected distinct slices"),
    ("report.primary.slices=all,warm", r"report\.target_effect: expected an effect for every slice"),
    ("report.equivalence_margin=0", r"report\.equivalence_margin: expected a margin in \(0, 1\)"),
    ("report.bootstrap_draws=500", r"report\.bootstrap_draws: expected an integer >= 2000"),
])
def test_a_bad_declaration_fails_at_load_with_its_dotted_path(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(override)


# ---- the engine's family, from the cells' cached test rows ---------------------------------------------------


def _rows(seed: int, variant: str) -> pl.DataFrame:
    """Every user sees every item; the label is a fixed draw; aligned_codes scores better than id_only."""
    rng = np.random.default_rng(100 + seed)
    users = np.repeat(np.arange(N_USERS), N_ITEMS)
    items = np.tile(np.arange(N_ITEMS), N_USERS)
    label = (rng.random(users.size) < 0.4).astype(np.int8)
    noise = np.random.default_rng([seed, len(variant)]).normal(size=users.size)
    signal = 1.5 if variant == "aligned_codes" else 0.5
    return pl.DataFrame({"user_idx": users.astype(np.int32), "item_idx": items.astype(np.int32), "label": label,
                         "pred": 1 / (1 + np.exp(-(signal * label + noise)))})


def _auc(frame: pl.DataFrame) -> float:
    from benchmark.cells.metrics import auc

    return auc(frame["label"].to_numpy(), frame["pred"].to_numpy())


def _cached_cells(cache: StageCache) -> list[CellRecord]:
    cells = []
    for seed in SEEDS:
        for variant in ("id_only", "aligned_codes"):
            key = f"{variant}-{seed}"
            frame = _rows(seed, variant)
            with cache.writing("rank", key, {}) as d:
                frame.write_parquet(d / "test_predictions.parquet")
            test = {"all": {"auc": _auc(frame)}, "cold": {"auc": _auc(frame.filter(pl.col("item_idx") < 4))}}
            cells.append(CellRecord(model="dlrm", variant=variant, seed=seed, key=key, best_epoch=0, val_best={},
                                    test=test, history=(), replicate_seed=seed))
    return cells


def _items(_split: int, _seed: int) -> pl.DataFrame:
    return pl.DataFrame({"item_idx": np.arange(N_ITEMS, dtype=np.int32), "is_cold": COLD})


def _results(cells: list[CellRecord], primary: dict) -> SuiteResults:
    prov = Provenance(config_hash="abc", git_sha="123", dataset="d", dataset_fingerprint="f", split="s", seeds=SEEDS,
                      date="2026-12-05", version="0", environment={"cpu": "Test CPU", "versions": {"torch": "x"}})
    return SuiteResults(suite="s", label="", variants=("id_only", "aligned_codes"), models=("dlrm",),
                        confidence=0.95, provenance=prov, config={}, data_stats={}, item_side=(), cells=tuple(cells),
                        primary=primary)


@pytest.fixture(scope="module")
def family_and_cells(tmp_path_factory: pytest.TempPathFactory) -> tuple[PrimaryFamily, list[CellRecord]]:
    cache = StageCache(tmp_path_factory.mktemp("cache"))
    cells = _cached_cells(cache)
    family = compute_primary(_cfg(), cache, cells, _items)
    assert family is not None
    return family, cells


def test_the_engine_bootstraps_every_primary_test(family_and_cells) -> None:
    family, cells = family_and_cells
    assert family.size == 2 and [(r.slice, r.variant, r.baseline) for r in family.records] == [
        ("all", "aligned_codes", "id_only"), ("cold", "aligned_codes", "id_only")]
    by = {r.slice: r for r in family.records}
    for s, r in by.items():
        want = np.mean([c.test[s]["auc"] for c in cells if c.variant == "aligned_codes"]) - np.mean(
            [c.test[s]["auc"] for c in cells if c.variant == "id_only"])
        assert r.delta == pytest.approx(want) and r.bootstrap_delta == pytest.approx(want)  # same rows, same Δ
        assert r.bootstrap_ci_low < r.bootstrap_delta < r.bootstrap_ci_high and 0 < r.bootstrap_p <= 1
        assert r.mde is not None and r.replicates_needed is None or r.replicates_needed >= 2
        assert r.seeds == SEEDS and r.family_size == 2
    assert by["cold"].bootstrap_two_way and not by["all"].bootstrap_two_way  # users x items on the cold slice
    assert by["all"].bootstrap_ci_low > 0  # a clear gain on 480 rows a seed
    # the cold slice has 4 items: its two-way interval is wider than the all-rows one
    assert by["cold"].bootstrap_ci_high - by["cold"].bootstrap_ci_low > by["all"].bootstrap_ci_high - \
        by["all"].bootstrap_ci_low


def test_cells_without_test_rows_leave_the_bootstrap_with_a_warning(tmp_path: Path, family_and_cells) -> None:
    family, cells = family_and_cells
    warnings: list[str] = []
    bare = compute_primary(_cfg(), StageCache(tmp_path), cells, _items, warn=warnings.append)
    assert bare is not None and bare.size == family.size and len(warnings) == 1 and "--force rank" in warnings[0]
    assert [r.delta for r in bare.records] == [r.delta for r in family.records]  # the t tests stay
    assert all(r.bootstrap_ci_low is None for r in bare.records)


def test_results_json_carries_the_family_and_the_report_prints_it_first(tmp_path: Path, family_and_cells) -> None:
    family, cells = family_and_cells
    results = _results(cells, to_plain(family))
    back = from_json(SuiteResults, json.loads(json.dumps(to_json(results))))
    assert results_family(back) == family  # round trip through results.json
    report = write_report(tmp_path, back)
    md = report.markdown
    assert md.index("## Primary hypothesis") < md.index("Provenance:") < md.index("## Ranking metrics")
    assert "m = 2 tests" in md and "(users x items)" in md and "Exploratory." in md
    assert "Environment: CPU Test CPU" in md
    saved = json.loads((tmp_path / "primary.json").read_text())
    assert from_mapping(PrimaryFamily, saved) == family and saved["size"] == 2
    assert isinstance(json.loads((tmp_path / "report.json").read_text()), list)  # its shape is unchanged
    page = (tmp_path / "report.html").read_text()
    assert page.index("Primary hypothesis") < page.index("Headline (exploratory)") and "Test CPU" in page
    desc = parent_run_description("my suite", report.rows, primary=family)
    assert desc.index("**Primary hypothesis**") < desc.index("Exploratory") < desc.index("my suite")
    assert "m = 2 tests" in desc


def test_a_suite_that_cannot_detect_its_target_says_so(family_and_cells) -> None:
    family, _ = family_and_cells
    desc = parent_run_description("", [], primary=family)
    cold = next(r for r in family.records if r.slice == "cold")
    assert (cold.mde > cold.target_effect) == ("cannot detect its target effect" in desc)
    import dataclasses

    easy = dataclasses.replace(family, records=tuple(dataclasses.replace(r, mde=0.001) for r in family.records))
    assert "every primary test can detect its target effect" in parent_run_description("", [], primary=easy)


def test_an_older_manifest_gets_its_family_recomputed_without_the_bootstrap(family_and_cells) -> None:
    family, cells = family_and_cells
    old = results_family(_results(cells, {}))
    assert old is not None and old.size == family.size
    assert [r.delta for r in old.records] == pytest.approx([r.delta for r in family.records])
    assert all(r.bootstrap_ci_low is None for r in old.records)


def test_the_parent_run_gets_the_family_as_metrics_and_tags(family_and_cells) -> None:
    family, _ = family_and_cells

    class Parent:
        metrics: dict = {}
        tags: dict = {}

        def log_metrics(self, m: dict) -> None:
            self.metrics.update(m)

        def set_tags(self, t: dict) -> None:
            self.tags.update(t)

    p = Parent()
    log_primary(p, family)
    assert p.metrics["primary_family_size"] == 2
    r = family.records[1]
    assert p.metrics["primary_dlrm_cold_aligned_codes_vs_id_only_mde"] == r.mde
    assert p.metrics["primary_dlrm_cold_aligned_codes_vs_id_only_bootstrap_p"] == r.bootstrap_p
    assert p.tags["primary.verdict.dlrm.cold.aligned_codes_vs_id_only"] == r.verdict


# ---- the per-cell bootstrap is pooled, not averaged; a constant delta keeps its p ------------------------------


def test_per_seed_bootstrap_intervals_are_kept_and_their_envelope_is_reported() -> None:
    cells = [CellRecord(model="dlrm", variant="id_only", seed=s, key=str(s), best_epoch=0, val_best={},
                        test={"all": {"auc": 0.7}}, history=(), test_bootstrap={"all": ci})
             for s, ci in ((0, (0.60, 0.70)), (1, (0.66, 0.74)), (2, (0.62, 0.69)))]
    (row,) = [r for r in aggregate(cells) if r["metric"] == "auc"]
    assert (row["bootstrap_ci_low"], row["bootstrap_ci_high"]) == (0.60, 0.74)  # not (0.6267, 0.71), the means
    assert row["bootstrap_ci_per_seed"] == [[0, 0.60, 0.70], [1, 0.66, 0.74], [2, 0.62, 0.69]]
    assert row["bootstrap_ci_per_cell"] == [[0, 0, 0.60, 0.70], [0, 1, 0.66, 0.74], [0, 2, 0.62, 0.69]]


def testper_cell_bootstrap_text_tells_split_seeds_apart() -> None:
    """Crossed split seeds: replicate seed 0 runs under split seeds 3 and 4; the per-cell key keeps both and the
    markdown labels them split/seed."""
    import dataclasses

    from benchmark.report.tables import per_cell_bootstrap_text

    cells = [dataclasses.replace(CellRecord(model="dlrm", variant="id_only", seed=0, key=f"k{sp}", best_epoch=0,
                                            val_best={}, test={"all": {"auc": 0.7}}, history=(),
                                            test_bootstrap={"all": ci}), split_seed=sp)
             for sp, ci in ((4, (0.61, 0.71)), (3, (0.60, 0.70)))]
    (row,) = [r for r in aggregate(cells) if r["metric"] == "auc"]
    assert row["bootstrap_ci_per_cell"] == [[3, 0, 0.60, 0.70], [4, 0, 0.61, 0.71]]
    assert per_cell_bootstrap_text(row) == "s3/0 [0.6000, 0.7000]; s4/0 [0.6100, 0.7100]"
    one_split = {"bootstrap_ci_per_seed": [[0, 0.6, 0.7]], "bootstrap_ci_per_cell": [[0, 0, 0.6, 0.7]]}
    assert per_cell_bootstrap_text(one_split) == "s0 [0.6000, 0.7000]"
    assert per_cell_bootstrap_text({"bootstrap_ci_per_seed": [[2, 0.6, 0.7]]}) == "s2 [0.6000, 0.7000]"  # an old row


def test_a_constant_delta_keeps_its_p_on_the_report_path() -> None:
    cells = [CellRecord(model="dlrm", variant=v, seed=s, key=f"{v}{s}", best_epoch=0, val_best={},
                        test={"all": {"auc": 0.70 + s * 0.01 + (0.02 if v == "aligned_codes" else 0.0)}}, history=())
             for s in SEEDS for v in ("id_only", "aligned_codes")]
    (row,) = [r for r in aggregate(cells) if r["variant"] == "aligned_codes"]
    assert row["delta_vs_id_only"] == pytest.approx(0.02) and row["p_value"] == 0.0 and row["holm_family_size"] == 1
    fam = results_family(_results(cells, {}))
    assert fam is not None and fam.records[0].p == 0.0 and fam.records[0].p_source == "constant"


# ---- provenance: the hardware and math stack ---------------------------------------------------------------


def test_the_environment_names_the_cpu_and_the_math_stack(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Example CPU @ 2.00GHz\n")
    assert cpu_model(info) == "Example CPU @ 2.00GHz"
    env = math_stack(1, 2, "cpu")
    assert env["torch_threads"] == 1 and env["workers"] == 2 and env["device"] == "cpu"
    assert isinstance(env["mkldnn"], bool) and "PyTorch built with" in env["torch_config"]
    assert {"torch", "numpy", "polars"} <= set(env["versions"]) and env["cpu"]
    assert not math.isnan(float(env["cpu_count"]))
