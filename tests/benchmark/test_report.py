"""Report statistics against hand-computed values, and the JSON row contract."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.records import CellRecord, Provenance, SuiteResults, to_json
from benchmark.report import ROW_KEYS, aggregate, mean_ci, paired_delta, write_report


def test_mean_ci_by_formula() -> None:
    # values 1, 2, 3: mean 2, sample std 1, t(0.975, df=2) = 4.302652729911275
    mean, std, lo, hi = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)
    assert mean == 2.0 and std == 1.0
    assert lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert mean_ci([0.7]) == (0.7, 0.0, 0.7, 0.7)


def test_paired_t_test_by_formula() -> None:
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t = 0.2 / (0.1/sqrt 3) = 3.4641; two-sided p, df 2
    from scipy import stats

    delta, p = paired_delta({0: 0.6, 1: 0.7, 2: 0.8}, {0: 0.5, 1: 0.5, 2: 0.5})
    t = 0.2 / (0.1 / math.sqrt(3))
    assert delta == pytest.approx(0.2)
    assert p == pytest.approx(2 * stats.t.sf(t, df=2))
    assert math.isnan(paired_delta({0: 0.6}, {0: 0.5})[1])


def _cells() -> list[CellRecord]:
    cells = []
    for seed, (base, qarm) in enumerate([(0.70, 0.72), (0.71, 0.74), (0.69, 0.70)]):
        for variant, auc in (("id_only", base), ("aligned_codes", qarm)):
            cells.append(CellRecord(model="dlrm", variant=variant, seed=seed, key=f"k{seed}{variant}", best_epoch=1,
                                    val_best={}, history=(),
                                    test={"all": {"auc": auc, "gauc": auc - 0.1, "logloss": 0.6},
                                          "cold": {"auc": float("nan"), "gauc": None, "logloss": 0.7}}))
    return cells


def _results(cells: list[CellRecord]) -> SuiteResults:
    prov = Provenance(config_hash="abc", git_sha="123", dataset="d", dataset_fingerprint="f", split="s",
                      seeds=(0, 1, 2), date="2026-11-28", version="0")
    return SuiteResults(suite="s", label="", variants=("id_only", "aligned_codes"), models=("dlrm",),
                        confidence=0.95, provenance=prov, config={}, data_stats={}, item_side=(),
                        cells=tuple(cells))


def test_aggregate_rows_and_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = aggregate(_cells())
    row = next(r for r in rows if r["variant"] == "aligned_codes" and r["slice"] == "all" and r["metric"] == "auc")
    assert row["mean"] == pytest.approx((0.72 + 0.74 + 0.70) / 3)
    assert row["delta_vs_id_only"] == pytest.approx((0.02 + 0.03 + 0.01) / 3)
    assert row["n_seeds"] == 3 and 0 < row["p_value"] < 1
    cold = next(r for r in rows if r["variant"] == "aligned_codes" and r["slice"] == "cold" and r["metric"] == "auc")
    assert cold["mean"] is None and cold["n_seeds"] == 0  # NaN AUC (one-label slice) never becomes a number
    results = _results(_cells())
    suite_dir = tmp_path / "runs" / "s"
    md, _ = write_report(suite_dir, results)
    assert "| dlrm | aligned_codes | all | 0.7200 ± 0.0200" in md and "config abc" in md
    (suite_dir / "results.json").write_text(json.dumps(to_json(results)))
    assert main(["report", "s", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out and all(tuple(r) == ROW_KEYS for r in out)


def test_a_manifest_with_a_renamed_field_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = to_json(_results(_cells()))
    plain["cells"][0]["tset"] = plain["cells"][0].pop("test")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "results.json").write_text(json.dumps(plain))
    assert main(["report", "s", "--runs-dir", str(tmp_path)]) == 2
    assert "cells[0].tset: unknown key" in capsys.readouterr().err


def test_report_of_unknown_suite_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "nope", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no results for suite 'nope'" in err and "Traceback" not in err
