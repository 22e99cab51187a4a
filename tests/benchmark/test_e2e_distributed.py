"""`qarm-bench run synthetic-tiny --nproc-per-node 2` end to end, beside a 1-process run of the same suite.

One suite directory: a 1-process run (sharded rankers, so both use the same fused optimiser), a 2-process run
whose rank 1 fails at its first cell (a clear message naming the rank, no result for that cell), then a
2-process run that recomputes alignment (DDP) and every cell. The 2-process run writes one parent run and the
same child runs as the 1-process one, with the same test AUC.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.dist.launch import FAIL_RANK_ENV

SMALL = ["suite.seeds=[0]", "suite.models=[\"dlrm\", \"sim\"]", "suite.variants=[\"id_only\", \"aligned_codes\"]",
         "rank.sharded=true", "rank.epochs=1"]


def _sets(tmp: Path) -> list[str]:
    return [f"suite.runs_dir={tmp / 'runs'}", f"suite.tracking_uri=sqlite:///{tmp / 'runs' / 'mlflow.db'}", *SMALL]


def _run(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    sets = [a for s in _sets(tmp) for a in ("--set", s)]
    cmd = [sys.executable, "-m", "benchmark", "run", "synthetic-tiny", *sets, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _cells(tmp: Path) -> dict[tuple[str, str, int], float]:
    results = json.loads((tmp / "runs" / "synthetic-tiny" / "results.json").read_text())
    return {(c["model"], c["variant"], c["seed"]): c["test"]["all"]["auc"] for c in results["cells"]}


@pytest.mark.slow
def test_two_processes_end_to_end_beside_one(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from benchmark.config.suite import load_config
    from benchmark.engine.suite import SuiteRun

    SuiteRun(load_config("synthetic-tiny", _sets(tmp_path)), progress=False).run()  # one process, in this one
    auc_one = _cells(tmp_path)
    assert len(auc_one) == 4

    # rank 1 fails at its first cell: the run fails naming it, and that cell (a new key) has no entry
    failed = _run(tmp_path, "--nproc-per-node", "2", "--set", "rank.batch_size=128", env={FAIL_RANK_ENV: "1"})
    assert failed.returncode != 0
    assert "qarm-bench: error: the distributed run failed: rank 1 (cell dlrm/id_only/seed0): RuntimeError: " \
           "injected failure" in failed.stderr
    rank_dir = tmp_path / "runs" / "synthetic-tiny" / "artifacts" / "rank"
    assert len([p for p in rank_dir.iterdir() if (p / "_SUCCESS").exists()]) == 4  # the 1-process run's only

    two = _run(tmp_path, "--nproc-per-node", "2", "--force", "align")
    assert two.returncode == 0, two.stderr[-3000:]
    assert "## Results" in two.stdout or "| dlrm |" in two.stdout  # rank 0's report, printed once
    assert two.stdout.count("| dlrm | id_only | all |") == 1
    auc_two = _cells(tmp_path)
    assert auc_two.keys() == auc_one.keys()
    assert all(abs(auc_two[k] - auc_one[k]) < 1e-3 for k in auc_one), (auc_one, auc_two)

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("synthetic-tiny")
    runs = client.search_runs([exp.experiment_id])
    parents = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags and r.info.status == "FINISHED"),
                     key=lambda r: r.info.start_time)
    assert [p.data.tags["world_size"] for p in parents] == ["1", "2"]  # one parent run per finished invocation

    def children(parent) -> set[tuple[str, str, str, str]]:
        kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert all(k.info.status == "FINISHED" for k in kids)
        return {(k.info.run_name, k.data.tags["model"], k.data.tags["variant"], k.data.tags["cached"]) for k in kids}

    assert children(parents[1]) == children(parents[0])  # the same 4 children, all trained (cached=false)
    assert all(c[3] == "false" for c in children(parents[1]))
