"""The suite config: packaged suites load, overrides and --quick apply, errors name file and dotted path."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.config import ALL_VARIANTS, load_config, slice_hash, sweep_configs
from benchmark.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "benchmark" / "configs").glob("*.toml"))


def test_default_suite_is_the_issue_s_suite() -> None:
    cfg = load_config()
    assert cfg.suite.name == "movielens-100k" and cfg.data.dataset == "movielens-100k"
    assert cfg.suite.variants == ALL_VARIANTS and cfg.suite.models == ("dlrm", "din", "sim")
    assert len(cfg.suite.seeds) == 3 and cfg.data.split.kind == "per_user_temporal"
    assert cfg.data.split.cold_item_frac == 0.1


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_packaged_config_loads(path: Path) -> None:
    runs = sweep_configs(path)
    assert runs and all(cfg.suite.name for _, cfg in runs)


def test_global_temporal_suite() -> None:
    assert load_config("movielens-100k-global-temporal").data.split.kind == "global_temporal"


def test_overrides_and_quick() -> None:
    cfg = load_config(None, ["quantize.codebook_size=128", "suite.seeds=0,1,2,3,4", "rank.sim.search=soft"])
    assert cfg.quantize.codebook_size == 128 and cfg.suite.seeds == (0, 1, 2, 3, 4)
    assert cfg.rank.sim.search == "soft"
    quick = load_config(None, [], quick=True)
    assert quick.suite.seeds == (0,) and quick.rank.epochs <= 2


def test_errors_name_the_file_and_dotted_path(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text('[quantize]\nquantizer = "kmeans"\n')
    with pytest.raises(ConfigError, match=r"s\.toml: quantize\.quantizer: expected one of 'rq_kmeans', 'rq_vae', 'vq'"):
        load_config(p)
    p.write_text("[rank.sim]\nserach = 'soft'\n")
    with pytest.raises(ConfigError, match=r"rank\.sim\.serach: unknown key \(did you mean 'rank\.sim\.search'\?\)"):
        load_config(p)
    p.write_text("[data.split]\nkind = 'random'\n")
    with pytest.raises(ConfigError, match=r"data\.split\.kind: expected one of 'per_user_temporal'"):
        load_config(p)
    p.write_text("[suite]\nseeds = []\n")
    with pytest.raises(ConfigError, match=r"suite\.seeds must name at least one seed"):
        load_config(p)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


def test_extends_merges_tables(tmp_path: Path) -> None:
    p = tmp_path / "abl.toml"
    p.write_text('extends = "movielens-100k"\n[suite]\nname = "abl"\nmodels = ["dlrm"]\n[quantize]\nlevels = 2\n')
    cfg = load_config(p)
    assert cfg.suite.name == "abl" and cfg.suite.models == ("dlrm",) and cfg.quantize.levels == 2
    assert cfg.quantize.vq_k == 25 and len(cfg.suite.seeds) == 3  # inherited


def test_sweep_expands_values(tmp_path: Path) -> None:
    p = tmp_path / "sw.toml"
    p.write_text('extends = "movielens-100k"\n[suite]\nname = "sw"\nsweep_key = "quantize.levels"\n'
                 'sweep_values = ["1", "2"]\n')
    runs = sweep_configs(p)
    assert [label for label, _ in runs] == ["quantize.levels=1", "quantize.levels=2"]
    assert [c.quantize.levels for _, c in runs] == [1, 2]
    p.write_text('[suite]\nsweep_key = "quantize.levelz"\nsweep_values = ["1"]\n')
    with pytest.raises(ConfigError, match=r"unknown key 'quantize\.levelz'"):
        sweep_configs(p)


def test_slice_hashes_are_independent() -> None:
    a = load_config(None, ["rank.epochs=3"])
    b = load_config(None, ["rank.epochs=4"])
    assert slice_hash(a.quantize, "up") == slice_hash(b.quantize, "up")  # codes reused across rank changes
    assert slice_hash(a.rank) != slice_hash(b.rank)
    assert slice_hash(a.quantize, "up1") != slice_hash(a.quantize, "up2")
