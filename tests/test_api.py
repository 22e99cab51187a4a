"""The Python API: `from benchmark import run, plan, load_results`; importing benchmark stays free of torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import benchmark
from benchmark.core.errors import ConfigError


def test_importing_benchmark_and_planning_load_no_torch() -> None:
    code = ("import sys, benchmark; p = benchmark.plan('synthetic-tiny'); "
            "heavy = [m for m in ('torch', 'torchrec', 'mlflow', 'faiss') if m in sys.modules]; "
            "print(type(p).__name__, len(p.cells), heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "SuitePlan 18 []"


def test_plan_is_typed_and_says_what_is_cached(tmp_path: Path) -> None:
    p = benchmark.plan("synthetic-tiny", [f"suite.runs_dir={tmp_path}"])
    assert {c.model for c in p.cells} == {"dlrm", "din", "sim"} and not any(c.cached for c in p.cells)
    assert p.entries[0].stage == "data" and len({e.replicate_seed for e in p.entries}) == 2


def test_a_bad_setting_raises_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"suite\.variants: unknown variant 'aligned_code'; did you mean"):
        benchmark.run("synthetic-tiny", [f"suite.runs_dir={tmp_path}", 'suite.variants=["aligned_code"]'])
    assert not (tmp_path / "synthetic-tiny").exists()


@pytest.mark.slow
def test_run_returns_the_typed_results_load_results_reads_back(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    results = benchmark.run("synthetic-tiny", [
        f"suite.runs_dir={runs}", f"suite.tracking_uri=sqlite:///{runs / 'mlflow.db'}", "suite.seeds=[0]",
        'suite.models=["dlrm"]', 'suite.variants=["id_only", "aligned_codes"]', "rank.epochs=1"], progress=False)
    assert [(c.model, c.variant) for c in results.cells] == [("dlrm", "id_only"), ("dlrm", "aligned_codes")]
    back = benchmark.load_results("synthetic-tiny", runs_dir=runs)
    assert [c.test for c in back.cells] == [c.test for c in results.cells]
    assert back.provenance.config_hash == results.provenance.config_hash
