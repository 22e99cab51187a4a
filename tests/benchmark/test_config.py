"""The suite config: packaged suites load, overrides and --quick apply, errors name file and dotted path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.config.suite import load_config, slice_hash, sweep_configs
from benchmark.config.variants import BUILTIN_VARIANTS
from benchmark.core.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "benchmark" / "configs").glob("*.toml"))


def test_default_suite_is_the_issue_s_suite() -> None:
    cfg = load_config()
    assert cfg.suite.name == "movielens-100k" and cfg.data.dataset == "movielens-100k"
    assert set(cfg.suite.variants) == set(BUILTIN_VARIANTS) - {"metadata_aligned_codes"}  # every variant but one
    assert cfg.suite.models == ("dlrm", "sim") and cfg.suite.replicate == "full"
    rankers = load_config("movielens-100k-all-rankers")
    assert rankers.suite.models == ("dlrm", "din", "sim") and len(rankers.suite.seeds) == 3  # issue 21: DIN at 3
    assert len(cfg.suite.seeds) == 5 and cfg.data.split.kind == "per_user_temporal"  # issue 21: 5 replicates
    paper = load_config("movielens-100k-paper")  # issue 20: sized by the default run's power analysis
    assert len(paper.suite.seeds) == len(paper.data.split.seeds) == 21
    assert paper.data.split.seed_pairing == "zipped"
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
    assert quick.suite.seeds == (0,) and quick.rank.epochs == 1


def test_errors_name_the_file_and_dotted_path(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text('[quantize]\nquantizer = "kmeans"\n')
    with pytest.raises(ConfigError, match=r"s\.toml: quantize\.quantizer: unknown quantizer 'kmeans'; did you mean 'rq_kmeans'\? \(registered: rq_kmeans, rq_vae, vq\)"):
        load_config(p)
    p.write_text("[rank.sim]\nserach = 'soft'\n")
    with pytest.raises(ConfigError, match=r"rank\.sim\.serach: unknown key \(did you mean 'rank\.sim\.search'\?\)"):
        load_config(p)
    p.write_text("[data.split]\nkind = 'random'\n")
    with pytest.raises(ConfigError, match=r"data\.split\.kind: expected one of 'per_user_temporal'"):
        load_config(p)
    p.write_text("[suite]\nseeds = []\n")
    with pytest.raises(ConfigError, match=r"s\.toml: suite\.seeds: expected at least one seed"):
        load_config(p)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


def test_extends_merges_tables(tmp_path: Path) -> None:
    p = tmp_path / "abl.toml"
    p.write_text('extends = "movielens-100k"\n[suite]\nname = "abl"\nmodels = ["dlrm"]\n[quantize]\nlevels = 2\n')
    cfg = load_config(p)
    assert cfg.suite.name == "abl" and cfg.suite.models == ("dlrm",) and cfg.quantize.levels == 2
    assert cfg.quantize.vq_k == 25 and len(cfg.suite.seeds) == 5  # inherited


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


def test_loading_every_packaged_config_and_walking_every_key_imports_no_torch() -> None:
    """Every packaged suite (every sweep value) loads, and every stage and cell key is computed, in a fresh
    interpreter that never imports torch or torchrec."""
    import subprocess
    import sys

    code = """
import sys
from benchmark.config.suite import packaged_configs, sweep_configs
from benchmark.cells.plan import plan_cell
from benchmark.itemside.stages import item_side_keys
from benchmark.engine.plan import cells_of, replicate_seed, replicate_seeds
n = 0
for path in packaged_configs():
    for _, cfg in sweep_configs(path):
        keys = {s: item_side_keys(cfg, "data-key", s) for s in replicate_seeds(cfg)}
        for v, m, seed in cells_of(cfg):
            plan_cell(cfg, v, m, seed, keys[replicate_seed(cfg, seed)])
            n += 1
heavy = sorted(m for m in ("torch", "torchrec", "fbgemm_gpu", "transformers", "mlflow") if m in sys.modules)
print(n, heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    n, heavy = out.stdout.split(" ", 1)
    assert int(n) > 100 and heavy.strip() == "[]"


@pytest.mark.parametrize(("setting", "message"), [
    ("align.batch_size=1", r"align\.batch_size: expected an integer >= 2"),
    ("align.patience=0", r"align\.patience: expected an integer >= 1"),
    ("pairs.swing_min_support=1", r"pairs\.swing\.min_support: expected an integer >= 2"),
    ("rank.sim.top_k=60", r"rank\.sim\.top_k: expected at most data\.history_len \(50\)"),
    ("rank.sim.prefix_depth=4", r"rank\.sim\.prefix_depth: expected at most quantize\.levels \(3\)"),
    ("data.split.val_frac=1.5", r"data\.split\.val_frac: expected a fraction in \[0, 1\)"),
    ("data.dataset=movielens-2k", r"data\.dataset: unknown dataset 'movielens-2k'; did you mean"),
    ("quantize.codebook_size=1", r"quantize\.codebook_size: expected an integer >= 2"),
    ("rank.din.max_len=0", r"rank\.din\.max_len: expected an integer >= 1"),
    ("rank.emb_optimizer=sgd", r"rank\.emb_optimizer: expected one of 'adagrad', 'rowwise_adagrad', 'adam'"),
    ("rank.pipeline=fast", r"rank\.pipeline: expected one of 'auto', 'sparse_dist', 'none'"),
    ("rank.pipeline=sparse_dist", r"rank\.pipeline: expected 'auto' or 'none' unless rank\.sharded = true"),
])
def test_bad_settings_fail_at_load_with_their_dotted_path(setting: str, message: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from benchmark.cli import main

    with pytest.raises(ConfigError, match=message):
        load_config(None, [setting])
    assert main(["plan", "--set", setting]) == 2  # before any stage runs or any file is hashed
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.search(message, err)


def test_deprecated_flat_keys_still_load(tmp_path: Path) -> None:
    p = tmp_path / "old.toml"
    p.write_text("[pairs]\nwindow = 20\nu2i_dim = 8\nswing_top_k = 3\n")
    cfg = load_config(p, ["pairs.u2i_epochs=2"])
    assert (cfg.pairs.u2i.window, cfg.pairs.u2i.dim, cfg.pairs.u2i.epochs) == (20, 8, 2)
    assert cfg.pairs.swing.top_k == 3
    p.write_text("[pairs]\nu2i_dim = 8\n[pairs.u2i]\ndim = 16\n")
    with pytest.raises(ConfigError, match=r"pairs\.u2i\.dim: given twice \(also under its old name pairs\.u2i_dim\)"):
        load_config(p)
    p.write_text("[pairs.u2i]\ndim = 16\n[pairs]\nu2i_dim = 8\n")
    with pytest.raises(ConfigError, match=r"pairs\.u2i\.dim: given twice \(also under its old name pairs\.u2i_dim\)"):
        load_config(p)


def test_one_config_per_stage_owned_by_its_library() -> None:
    from qarm.alignment import AlignConfig
    from qarm.encoders import EncoderConfig
    from qarm.pairs import PairsConfig
    from qarm.quantize import QuantizeConfig
    from recsys_models.config import TrainConfig

    cfg = load_config()
    assert type(cfg.pairs) is PairsConfig and type(cfg.encoder) is EncoderConfig
    assert type(cfg.align) is AlignConfig and type(cfg.quantize) is QuantizeConfig and type(cfg.rank) is TrainConfig
    # the default suite's values are the libraries' defaults (one set of defaults)
    assert cfg.align == AlignConfig() and cfg.rank.din.attention_hidden == (36,)


def test_every_builtin_is_an_installed_entry_point_of_its_registry() -> None:
    """pyproject.toml's entry points declare exactly the built-ins, and each loads as the object its layer
    expects (a renamed constant or a forgotten declaration fails here)."""
    from benchmark.cells.rankers import RankerSpec, get_ranker
    from benchmark.config.data import BUILTIN_DATASETS
    from benchmark.config.variants import Variant, get_variant
    from benchmark.core.registry import DATASETS, QUANTIZERS, RANKERS, VARIANTS
    from benchmark.data import registry
    from benchmark.itemside.quantizers import QuantizerSpec, get_quantizer
    from recsys_models.config import MODELS

    assert set(DATASETS.names()) >= set(BUILTIN_DATASETS) == set(registry.BUILTIN)
    assert all(isinstance(registry.get(n), registry.Dataset) for n in BUILTIN_DATASETS)
    assert set(VARIANTS.names()) >= set(BUILTIN_VARIANTS)
    assert all(isinstance(get_variant(n), Variant) for n in BUILTIN_VARIANTS)
    assert set(RANKERS.names()) >= set(MODELS) and all(isinstance(get_ranker(m), RankerSpec) for m in MODELS)
    assert set(QUANTIZERS.names()) >= {"rq_kmeans", "rq_vae", "vq"}
    assert all(isinstance(get_quantizer(q), QuantizerSpec) for q in ("rq_kmeans", "rq_vae", "vq"))


@pytest.mark.parametrize(("setting", "value", "suggestion"), [
    ("suite.variants", '["aligned_code"]', "aligned_codes"), ("suite.models", '["dlmr"]', "dlrm"),
    ("quantize.quantizer", "rq_kmean", "rq_kmeans"), ("data.dataset", "movielens-100", "movielens-100k")])
def test_an_unknown_key_lists_the_registered_ones_and_the_closest(setting: str, value: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config("synthetic-tiny", [f"{setting}={value}"])
    msg = str(e.value)
    assert setting in msg and f"did you mean {suggestion!r}" in msg and "registered:" in msg


def test_sharding_settings_that_cannot_be_honoured_fail_at_load() -> None:
    assert load_config(None, ["rank.emb_optimizer=rowwise_adagrad"]).rank.emb_optimizer == "rowwise_adagrad"
    assert load_config(None, ["rank.sharding=column_wise"]).rank.sharding == "column_wise"  # D = 16: 2 x 8
    with pytest.raises(ConfigError, match=r"rank\.sharding: 'column_wise' splits every table's columns .* needs "
                                          r"rank\.embedding_dim a multiple of 4 and at least 8; got rank\.embedding_dim = 6"):
        load_config(None, ["rank.sharding=column_wise", "rank.embedding_dim=6"])
    with pytest.raises(ConfigError, match=r"rank\.sharding: 'column_wise' with rank\.emb_optimizer = 'rowwise_adagrad'"):
        load_config(None, ["rank.sharding=column_wise", "rank.emb_optimizer=rowwise_adagrad"])


def _list_settings(cls: type, prefix: str = "") -> list[str]:
    """Dotted paths of every tuple-typed (list) setting of the config tree."""
    import dataclasses
    import types
    import typing

    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        union = typing.get_origin(tp) in (typing.Union, types.UnionType)
        for a in [a for a in typing.get_args(tp) if a is not type(None)] if union else [tp]:
            if dataclasses.is_dataclass(a):
                out += _list_settings(a, f"{prefix}{f.name}.")
            elif typing.get_origin(a) is tuple:
                out.append(f"{prefix}{f.name}")
    return out


def test_every_list_setting_takes_the_same_forms() -> None:
    """Issue 23 point 7: `a,b`, `["a", "b"]` and, for one value, `a` give the same config for every list setting."""
    import json

    from benchmark.config.suite import SuiteConfig
    from benchmark.core.configlib import to_plain

    plain = to_plain(load_config("synthetic-tiny"))
    checked = 0
    for key in _list_settings(SuiteConfig):
        node = plain
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if not node:
            continue
        forms = [",".join(map(str, node)), json.dumps(node)] + ([str(node[0])] if len(node) == 1 else [])
        for form in forms:
            assert to_plain(load_config("synthetic-tiny", [f"{key}={form}"])) == plain, (key, form)
        checked += 1
    assert checked >= 10


def test_a_registered_object_of_the_wrong_type_is_refused_by_name() -> None:
    from benchmark.config.variants import ID_ONLY, get_variant
    from benchmark.core.registry import VARIANTS

    VARIANTS.add("not_a_variant", object())
    VARIANTS.add("misnamed", ID_ONLY)  # a Variant, but named id_only
    try:
        with pytest.raises(ConfigError, match=r"suite\.variants: the qarm_bench\.variants entry 'not_a_variant' .* "
                                              r"not a Variant named 'not_a_variant'"):
            get_variant("not_a_variant")
        with pytest.raises(ConfigError, match="not a Variant named 'misnamed'"):
            get_variant("misnamed")
    finally:
        VARIANTS.remove("not_a_variant")
        VARIANTS.remove("misnamed")
