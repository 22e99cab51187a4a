"""Bit for bit: synthetic-tiny's stage keys and its results.json figures, recorded once in
tests/benchmark/golden/synthetic-tiny.json, must come out unchanged from any refactor.

The suite runs through the command line (`qarm-bench run synthetic-tiny`), so the test does not depend on
where the code lives. Keys must match exactly; figures to 1e-9 (the run is deterministic on one machine and
thread count). A change that is meant to change the figures (a new sampling scheme, a fixed bug) regenerates
the file with `QARM_REGENERATE_GOLDEN=1 pytest tests/benchmark/test_golden.py` and says why in its commit.
Alignment is not bit-reproducible across CPU models (docs/results.md): on another machine regenerate first.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).parent / "golden" / "synthetic-tiny.json"


def _figures(results: dict[str, Any]) -> dict[str, Any]:
    """The part of results.json a refactor must not change: keys, item-side figures, cell figures."""
    reps = {str(r["seed"]): {"stage_keys": r["stage_keys"], "pair_stats": r["pair_stats"],
                             "aligned_recall": r["alignment"]["aligned_recall"],
                             "frozen_recall": r["alignment"]["frozen_recall"],
                             "best_epoch": r["alignment"]["best_epoch"],
                             "code_sets": {c["name"]: c["diagnostics"] for c in r["code_sets"]}}
            for r in results["item_side"]}
    cells = {f"{c['model']}/{c['variant']}/seed{c['seed']}": {"key": c["key"], "best_epoch": c["best_epoch"],
                                                               "val_best": c["val_best"], "test": c["test"]}
             for c in results["cells"]}
    return {"replicates": reps, "cells": cells}


def _compare(got: Any, want: Any, path: str = "") -> list[str]:
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return [f"{path}: keys {sorted(got) if isinstance(got, dict) else got!r} != {sorted(want)}"]
        return [d for k in want for d in _compare(got[k], want[k], f"{path}.{k}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{path}: {got!r} != {want!r}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in _compare(g, w, f"{path}[{i}]")]
    if isinstance(want, float) and isinstance(got, int | float) and not isinstance(got, bool):
        same = (math.isnan(want) and math.isnan(got)) or math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
        return [] if same else [f"{path}: {got!r} != {want!r}"]
    return [] if got == want else [f"{path}: {got!r} != {want!r}"]


@pytest.mark.slow
def test_synthetic_tiny_keys_and_figures_are_unchanged(tmp_path: Path) -> None:
    from benchmark.cli import main

    runs = tmp_path / "runs"
    rc = main(["run", "synthetic-tiny", "--set", f"suite.runs_dir={runs}",
               "--set", f"suite.tracking_uri=sqlite:///{runs / 'mlflow.db'}"])
    assert rc == 0
    found = sorted((runs / "synthetic-tiny").rglob("results.json"))
    assert found, "the run wrote no results.json"
    got = _figures(json.loads(found[-1].read_text()))
    if os.environ.get("QARM_REGENERATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    diffs = _compare(got, want)
    assert not diffs, f"{len(diffs)} figure(s) differ from {GOLDEN.name}:\n" + "\n".join(diffs[:30])


def test_the_comparison_can_fail() -> None:
    want = {"a": {"k": "abc", "x": 0.5, "n": [1, 2]}}
    assert _compare(want, want) == []
    assert _compare({"a": {"k": "abd", "x": 0.5, "n": [1, 2]}}, want)
    assert _compare({"a": {"k": "abc", "x": 0.5 + 1e-6, "n": [1, 2]}}, want)
    assert _compare({"a": {"k": "abc", "x": 0.5, "n": [1, 3]}}, want)
    assert _compare({"a": {"k": "abc", "x": 0.5}}, want)
