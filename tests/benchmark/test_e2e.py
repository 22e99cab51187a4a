"""End to end on tiny synthetic data: every stage, MLflow run tree, report, plots, resume after a kill."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.config.suite import load_config
from benchmark.engine.plan import cells_of
from benchmark.engine.suite import SuiteRun


def _cfg(tmp: Path, *extra: str):
    return load_config("synthetic-tiny", [f"suite.runs_dir={tmp / 'runs'}",
                                          f"suite.tracking_uri=sqlite:///{tmp / 'runs' / 'mlflow.db'}", *extra])


@pytest.mark.slow
def test_whole_pipeline_mlflow_tree_report_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    cfg = _cfg(tmp_path)
    results = SuiteRun(cfg, progress=False).run()
    n_cells = len(cells_of(cfg))
    assert len(results.cells) == n_cells == 18

    client = MlflowClient(tracking_uri=cfg.suite.tracking_uri)
    exp = client.get_experiment_by_name("synthetic-tiny")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == n_cells
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"variant", "model", "seed"} <= set(child.data.tags)
        assert child.data.tags["cached"] == "false"  # every cell trained now, those done in the item side's time too
        assert "test_all_auc" in child.data.metrics and "best_epoch" in child.data.metrics
        assert client.get_metric_history(child.info.run_id, "val_auc")  # per-epoch metrics with steps
    # the alignment curve reaches the parent run and the plot: the same finite values, epoch by epoch
    from benchmark.report.plots import alignment_series

    assert [r.seed for r in results.item_side] == [0, 1]  # full replicates: one item side per seed
    summary = results.item_side[0].alignment
    logged = client.get_metric_history(parent.info.run_id, "align_val_recall_r0")
    series = alignment_series(summary)
    assert [m.step for m in logged] == series["epoch"] == [h.epoch for h in summary.history] != []
    assert [m.value for m in logged] == pytest.approx(series["val_recall"])
    assert all(0.0 <= v <= 1.0 for v in series["val_recall"])
    assert parent.data.metrics["align_aligned_recall_r0"] == pytest.approx(summary.aligned_recall)
    assert parent.data.metrics["align_aligned_recall"] == pytest.approx(summary.aligned_recall)  # first replicate
    assert parent.data.metrics["pairs_n_pairs_r1"] == results.item_side[1].pair_stats.n_pairs
    sims = [c for c in results.cells if c.model == "sim"]
    assert {(c.sim_search, c.sim_search_codes) for c in sims} == {("hard", "frozen_rq_kmeans")}  # one search unit
    assert {c.replicate_seed for c in results.cells} == {0, 1}
    assert all(c.n_embedding_parameters > 0 and c.n_dense_parameters > 0 for c in results.cells)
    assert all(c.test_bootstrap["all"] is not None for c in results.cells)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "plots", "stats", "config"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/auc_by_variant.png" in plots and "plots/codebook_utilisation.png" in plots

    suite_dir = tmp_path / "runs" / "synthetic-tiny" / "latest"  # this invocation's run folder
    report = (suite_dir / "report.md").read_text()
    assert "| dlrm | aligned_codes | all |" in report and "## Code quality" in report
    rows = json.loads((suite_dir / "report.json").read_text())
    assert {r["variant"] for r in rows} == {"id_only", "aligned_codes", "codes_only"}
    # `plan` now finds every stage and cell cached, and `report` re-renders from the manifest
    from benchmark.cli import main

    sets = ["--set", f"suite.runs_dir={tmp_path / 'runs'}"]
    assert main(["plan", "synthetic-tiny", *sets]) == 0
    out = capsys.readouterr().out
    assert "18/18 cells cached" in out and "to run" not in out
    assert main(["report", "synthetic-tiny", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == rows
    for png in (suite_dir / "plots").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((suite_dir / "plots").glob("*.png"))) >= 6


def _test_metrics(results) -> dict:
    return {(c.model, c.variant, c.seed): c.test for c in results.cells}


@pytest.mark.slow
def test_interrupted_after_codes_resumes_with_identical_metrics(tmp_path: Path, monkeypatch) -> None:
    # one worker: the kill is injected into this process's train_cell, which spawned workers would not see
    extra = ("suite.models=dlrm", "suite.seeds=0", "suite.workers=1")
    clean = SuiteRun(_cfg(tmp_path / "clean", *extra), progress=False).run()

    import benchmark.cells.train as train_mod

    real_train = train_mod.train_cell

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies right after the codes stage, before any cell finishes

    cfg = _cfg(tmp_path / "resumed", *extra)
    monkeypatch.setattr(train_mod, "train_cell", killed)
    with pytest.raises(KeyboardInterrupt):
        SuiteRun(cfg, progress=False).run()
    codes_dir = tmp_path / "resumed" / "runs" / "synthetic-tiny" / "artifacts" / "codes"
    entries = [p for p in codes_dir.iterdir() if (p / "_SUCCESS").exists()]
    # one replicate (seed 0): aligned_rq_kmeans (the variants'; no sim model here, so no search codes), and the
    # panel's rq_kmeans / rq_vae / rq_kmeans.{dedup,fsq,balanced} of both sources
    assert len(entries) == 10
    stamps = {p: (p / "_SUCCESS").stat().st_mtime_ns for p in entries}

    # On the rerun every item-side stage must come from the cache: make recomputing them fail loudly.
    import qarm.pairs
    import qarm.quantize

    def no_recompute(*args, **kwargs):
        raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr(qarm.pairs, "mine_pairs", no_recompute)
    monkeypatch.setattr(qarm.quantize, "RQKmeans", no_recompute)
    monkeypatch.setattr(train_mod, "train_cell", real_train)
    resumed = SuiteRun(cfg, progress=False).run()
    assert {p: (p / "_SUCCESS").stat().st_mtime_ns for p in entries} == stamps
    assert _test_metrics(resumed) == _test_metrics(clean)
