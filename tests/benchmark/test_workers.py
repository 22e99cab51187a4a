"""Cells trained in worker processes give exactly the results of one process (same seeds, same threads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.config.suite import load_config
from benchmark.engine.suite import SuiteRun


def _run(tmp: Path, workers: int):
    cfg = load_config("synthetic-tiny", [f"suite.runs_dir={tmp / 'runs'}", f"suite.workers={workers}",
                                         f"suite.tracking_uri=sqlite:///{tmp / 'runs' / 'mlflow.db'}",
                                         "suite.models=dlrm,din", "suite.seeds=0", "suite.threads=1"])
    return SuiteRun(cfg, progress=False).run()


@pytest.mark.slow
def test_two_workers_equal_one_process_bit_for_bit(tmp_path: Path) -> None:
    one, two = _run(tmp_path / "one", 1), _run(tmp_path / "two", 2)
    assert [(c.model, c.variant, c.seed, c.test, c.best_epoch) for c in one.cells] == \
        [(c.model, c.variant, c.seed, c.test, c.best_epoch) for c in two.cells]
    assert [[h.train_loss for h in c.history] for c in one.cells] == \
        [[h.train_loss for h in c.history] for c in two.cells]
