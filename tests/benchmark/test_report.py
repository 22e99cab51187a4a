"""Report statistics against hand-computed values, and the JSON row contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.records import CellRecord, Provenance, SuiteResults, to_json
from benchmark.report import ROW_KEYS, aggregate, write_report


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
    assert row["p_value_holm"] == row["p_value"] and row["holm_family_size"] == 1  # one comparison per family
    assert row["delta_vs_frozen"] is None and row["p_value_vs_frozen"] is None  # no frozen_codes cells here
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


def test_holm_families_and_frozen_counterparts() -> None:
    """Three variants against id_only in one family (model x slice x metric) -> Holm over three; aligned_codes
    also against frozen_codes, in a family of its own."""
    from benchmark.stats import holm

    gains = {"id_only": (0.0, 0.0, 0.0), "frozen_codes": (0.01, 0.012, 0.011), "aligned_codes": (0.03, 0.02, 0.025),
             "random_codes": (0.001, -0.002, 0.0)}
    cells = [CellRecord(model="dlrm", variant=v, seed=s, key=f"{v}{s}", best_epoch=1, val_best={}, history=(),
                        test={"all": {"auc": 0.7 + g[s] + 0.001 * s}}) for v, g in gains.items() for s in range(3)]
    rows = {r["variant"]: r for r in aggregate(cells) if r["metric"] == "auc"}
    raw = [rows[v]["p_value"] for v in ("frozen_codes", "aligned_codes", "random_codes")]
    assert [rows[v]["p_value_holm"] for v in ("frozen_codes", "aligned_codes", "random_codes")] == pytest.approx(
        holm(raw))
    assert {rows[v]["holm_family_size"] for v in gains if v != "id_only"} == {3}
    a = rows["aligned_codes"]
    assert a["delta_vs_frozen"] == pytest.approx((0.02 + 0.008 + 0.014) / 3)
    assert a["p_value_vs_frozen_holm"] == pytest.approx(a["p_value_vs_frozen"])  # a family of one here
    assert rows["random_codes"]["delta_vs_frozen"] is None
