"""`qarm-bench align-refs` on the tiny synthetic suite: the table and record land in the suite folder, and its
test pairs are the alignment stage's own (the aligned and frozen rows equal the stage's summary)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main


@pytest.mark.slow
def test_align_refs_writes_the_alignment_stage_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmark.config.suite import load_config
    from benchmark.engine.alignrefs import compute_references
    from benchmark.itemside.compute import load_align

    args = ["--set", f"suite.runs_dir={tmp_path}"]
    assert main(["align-refs", "synthetic-tiny", *args]) == 0
    out = capsys.readouterr().out
    assert "| aligned |" in out and "| popularity |" in out and "probe" not in out
    suite = tmp_path / "synthetic-tiny"
    record = json.loads((suite / "alignment_references.json").read_text())
    assert (suite / "alignment_references.md").read_text().startswith("# Alignment references: synthetic-tiny")
    rows = {r["name"]: r["recall"] for r in record["rows"]}
    assert set(rows) == {"frozen", "aligned", "u2i", "popularity"}
    align_dir = next((suite / "artifacts" / "align").iterdir())
    summary = load_align(align_dir).summary
    assert summary.references is not None and summary.n_test_pairs == record["n_pairs"]
    assert rows["aligned"]["overall"] == pytest.approx(summary.aligned_recall)
    assert rows["frozen"]["overall"] == pytest.approx(summary.frozen_recall)
    # a second call loads every stage from the cache and gives the same record
    cfg = load_config("synthetic-tiny", [f"suite.runs_dir={tmp_path}"])
    again = compute_references(cfg)
    assert again.row("aligned").recall.overall == pytest.approx(rows["aligned"]["overall"])  # type: ignore[union-attr]
    assert main(["align-refs", "synthetic-tiny", *args, "--probe-epochs", "-1"]) == 2
