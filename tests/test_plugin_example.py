"""The example plugin package (tests/plugin_example, docs/extending.md), loaded through its entry points and run
through synthetic-tiny end to end: its ranker, variant and dataset get the built-ins' training, metrics, MLflow
runs and report. The package is not installed: the test writes its distribution metadata (the entry points of
its pyproject.toml) into a temporary folder on sys.path, which is how importlib.metadata finds installed ones."""

from __future__ import annotations

import dataclasses
import math
import sys
import tomllib
from pathlib import Path

import pytest

from benchmark.core import registry

PLUGIN = Path(__file__).parent / "plugin_example"


@pytest.fixture()
def plugin_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meta = tomllib.loads((PLUGIN / "pyproject.toml").read_text())
    dist = tmp_path / "site" / "qarm_example_plugin-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qarm-example-plugin\nVersion: 0.1.0\n")
    lines = []
    for group, entries in meta["project"]["entry-points"].items():
        lines += [f"[{group}]", *(f"{k} = {v}" for k, v in entries.items()), ""]
    (dist / "entry_points.txt").write_text("\n".join(lines))
    for p in (str(PLUGIN), str(tmp_path / "site")):  # spawned workers inherit sys.path
        monkeypatch.syspath_prepend(p)
    registry.refresh()
    yield
    monkeypatch.undo()
    registry.refresh()
    for r in registry.REGISTRIES:  # forget the loaded plugin objects
        for name in ("pooled_mlp", "aligned_codes_dense", "toy-clusters"):
            r.remove(name)


def test_the_registries_see_the_plugins_without_importing_them(plugin_installed: None) -> None:
    assert "pooled_mlp" in registry.RANKERS.names() and "toy-clusters" in registry.DATASETS.names()
    assert "aligned_codes_dense" in registry.VARIANTS.names()
    assert "qarm_example_plugin.ranker" not in sys.modules  # listing keys loads nothing


@pytest.mark.slow
def test_plugin_ranker_variant_and_dataset_through_synthetic_tiny(plugin_installed: None, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    import benchmark

    runs = tmp_path / "runs"
    uri = f"sqlite:///{runs / 'mlflow.db'}"
    results = benchmark.run("synthetic-tiny", [
        f"suite.runs_dir={runs}", f"suite.tracking_uri={uri}", "data.dataset=toy-clusters", "suite.seeds=[0]",
        'suite.models=["dlrm", "pooled_mlp"]', 'suite.variants=["id_only", "aligned_codes", "aligned_codes_dense"]',
        "rank.epochs=2"], progress=False)
    assert results.provenance.dataset == "toy-clusters"
    cells = {(c.model, c.variant): c for c in results.cells}
    assert set(cells) == {(m, v) for m in ("dlrm", "pooled_mlp") for v in ("id_only", "aligned_codes",
                                                                          "aligned_codes_dense")}
    for (model, variant), c in cells.items():
        assert 0.0 < c.test["all"]["auc"] <= 1.0 and c.n_embedding_parameters > 0, (model, variant)
    # the plugin variant feeds both the codes and the dense vector: more dense inputs than aligned_codes alone
    assert cells[("pooled_mlp", "aligned_codes_dense")].n_dense_parameters > \
        cells[("pooled_mlp", "aligned_codes")].n_dense_parameters
    md = (runs / "synthetic-tiny" / "latest" / "report.md").read_text()
    assert "| pooled_mlp | aligned_codes_dense | all |" in md
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("synthetic-tiny")
    names = {r.data.tags.get("mlflow.runName") for r in client.search_runs([exp.experiment_id])}
    assert "pooled_mlp/aligned_codes_dense/seed0" in names


def test_plugin_ranker_shards_like_a_builtin(plugin_installed: None) -> None:
    """The sharded path (DMP over its EmbeddingBagCollection, fused table optimiser) takes the plugin as is."""
    import numpy as np
    import polars as pl
    import torch

    from benchmark.cells.inputs import CellInputs, build_features
    from benchmark.cells.train import train_cell
    from recsys_models.config import TrainConfig

    rng = np.random.default_rng(0)
    n = 200
    frame = pl.DataFrame({"user_idx": rng.integers(0, 10, n), "item_idx": rng.integers(0, 20, n), "ts": np.arange(n),
                          "label": rng.integers(0, 2, n), "hist_item_idx": [[1, 2]] * n},
                         schema_overrides={"user_idx": pl.Int32, "item_idx": pl.Int32, "label": pl.Int8,
                                           "hist_item_idx": pl.List(pl.Int32)})
    items = pl.DataFrame({"item_idx": np.arange(20, dtype=np.int32), "is_cold": [False] * 20, "pop_bucket": [0] * 20})
    fs = build_features("id_only", n_items=20, n_users=10, embedding_dim=4)
    inputs = CellInputs(frame, frame, frame, items, fs, None)
    cfg = TrainConfig(epochs=1, batch_size=64, embedding_dim=4)
    plain = train_cell("pooled_mlp", inputs, cfg, seed=0)
    sharded = train_cell("pooled_mlp", inputs, dataclasses.replace(cfg, sharded=True), seed=0)
    assert sharded.sharding_plan and math.isfinite(sharded.test["all"]["auc"])
    assert plain.n_embedding_parameters == sharded.n_embedding_parameters
    # and through TorchRec's TrainPipelineSparseDist, as it runs on CUDA: the same figures
    piped = train_cell("pooled_mlp", inputs, dataclasses.replace(cfg, sharded=True, pipeline="sparse_dist"), seed=0)
    assert piped.pipeline == "sparse_dist" and piped.test["all"] == sharded.test["all"]  # (the cold slice is empty: NaN)
    assert piped.test_predictions.equals(sharded.test_predictions)
    assert [h.train_loss for h in piped.history] == [h.train_loss for h in sharded.history]
    torch.manual_seed(0)


@pytest.mark.slow
def test_a_quantizer_registered_by_decorator_reaches_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  request: pytest.FixtureRequest) -> None:
    import benchmark

    monkeypatch.syspath_prepend(str(PLUGIN))
    import qarm_example_plugin.decorated  # noqa: F401  (registers "coarse_rq")

    request.addfinalizer(lambda: registry.QUANTIZERS.remove("coarse_rq"))  # later tests see the built-ins only

    assert "qarm_example_plugin.decorated" in registry.plugin_modules()
    runs = tmp_path / "runs"
    results = benchmark.run("synthetic-tiny", [
        f"suite.runs_dir={runs}", f"suite.tracking_uri=sqlite:///{runs / 'mlflow.db'}", "suite.seeds=[0]",
        'suite.models=["dlrm"]', 'suite.variants=["id_only", "aligned_codes", "random_codes"]', "rank.epochs=1",
        "suite.workers=2", "quantize.quantizer=coarse_rq"], progress=False)
    side = results.item_side[0]
    coarse = next(c for c in side.code_sets if c.name == "aligned_coarse_rq")
    assert max(coarse.diagnostics["codebook_size"]) == 4  # synthetic-tiny's K = 8, halved
    assert {c.variant for c in results.cells} == {"id_only", "aligned_codes", "random_codes"}
