"""Report statistics against hand-computed values, and the JSON row contract."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core.records import CellRecord, Provenance, SuiteResults, to_json
from benchmark.report.headline import headline_deltas, parent_run_description, significance_key, verdict
from benchmark.report.stats import paired_delta
from benchmark.report.tables import ROW_KEYS, aggregate
from benchmark.report.write import write_report


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
    report = write_report(suite_dir, results)
    md = report.markdown
    assert "| dlrm | aligned_codes | all | 0.7200 ± 0.0200" in md and "config abc" in md
    assert {p.name for p in suite_dir.iterdir()} >= {"report.md", "report.json", "report.html", "plots"}
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
    from benchmark.report.stats import holm

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


def test_delta_ci_is_the_paired_t_interval_by_formula() -> None:
    # differences 0.02, 0.03, 0.01 (the _cells fixture): mean 0.02, sd 0.01, t(0.975, df=2) = 4.302652729911275
    rows = aggregate(_cells())
    row = next(r for r in rows if r["variant"] == "aligned_codes" and r["slice"] == "all" and r["metric"] == "auc")
    half = 4.302652729911275 * 0.01 / math.sqrt(3)
    assert row["delta_ci_low"] == pytest.approx(0.02 - half) and row["delta_ci_high"] == pytest.approx(0.02 + half)
    base = next(r for r in rows if r["variant"] == "id_only" and r["slice"] == "all" and r["metric"] == "auc")
    assert base["delta_ci_low"] is None and base["delta_ci_high"] is None
    one_seed = aggregate([c for c in _cells() if c.seed == 0])
    assert all(r["delta_ci_low"] is None and r["delta_ci_high"] is None for r in one_seed)  # null under 2 seeds
    assert paired_delta({0: 0.6, 1: 0.6}, {0: 0.5, 1: 0.5})[2:] == pytest.approx((0.1, 0.1))  # no spread, no width


def test_row_keys_are_extended_never_renamed() -> None:
    assert ROW_KEYS[:11] == ("model", "variant", "slice", "metric", "mean", "std", "ci_low", "ci_high", "n_seeds",
                             "delta_vs_id_only", "p_value")
    assert set(ROW_KEYS[11:]) >= {"delta_ci_low", "delta_ci_high", "p_value_holm", "delta_vs_frozen",
                                  "p_value_vs_frozen", "p_value_vs_frozen_holm"}
    assert all(tuple(r) == ROW_KEYS for r in aggregate(_cells()))


def _row(variant: str, slice_name: str, delta: float | None, p: float | None, **extra: float | None) -> dict:
    return {"model": "dlrm", "variant": variant, "slice": slice_name, "metric": "auc", "mean": 0.7, "std": 0.01,
            "ci_low": 0.69, "ci_high": 0.71, "n_seeds": 3, "delta_vs_id_only": delta, "p_value": p,
            "delta_ci_low": None if delta is None else delta - 0.01,
            "delta_ci_high": None if delta is None else delta + 0.01, **extra}


def test_headline_calls_a_gain_only_below_alpha() -> None:
    rows = [_row("id_only", "all", None, None), _row("codes_only", "all", 0.02, 0.01),
            _row("aligned_codes", "all", 0.03, 0.2), _row("aligned_codes", "cold", -0.04, 0.001)]
    text = headline_deltas(rows, variants=["id_only", "codes_only", "aligned_codes"])
    lines = [ln for ln in text.splitlines() if ln.startswith("- ")]
    # the QARM variant first, then the others in suite order
    assert lines[0].startswith("- dlrm · aligned_codes · all: Δ +0.0300 [+0.0200, +0.0400], p = 0.200")
    assert lines[0].endswith("not significant (3 seeds)")
    assert lines[1].startswith("- dlrm · aligned_codes · cold") and "significant loss" in lines[1]
    assert lines[2].startswith("- dlrm · codes_only · all") and "significant gain" in lines[2]
    assert "not Holm-adjusted" in text
    assert verdict(0.05, None, "auc") == "no test (under 2 seeds)"
    assert verdict(-0.05, 0.01, "logloss") == "significant gain"  # LogLoss improves downwards


def test_headline_uses_holm_p_when_rows_carry_it() -> None:
    # unadjusted p 0.01 would be a gain; the Holm-adjusted 0.06 is not
    rows = [_row("id_only", "all", None, None, p_value_holm=None),
            _row("aligned_codes", "all", 0.03, 0.01, p_value_holm=0.06)]
    assert significance_key(rows) == "p_value_holm"
    text = headline_deltas(rows)
    assert "Holm-adjusted p" in text and "p = 0.060: not significant" in text and "gain" not in text
    desc = parent_run_description("  The default suite.  ", rows)
    # the headline first: MLflow's run page may fold a long description
    assert desc.startswith("**Headline") and desc.endswith("\n\nThe default suite.")
    assert parent_run_description("", rows) == text
    assert headline_deltas([_row("aligned_codes", "all", None, None)]).startswith("No id_only variant")


def test_the_report_imports_no_torch(tmp_path: Path) -> None:
    """`qarm-bench report` reads results.json only: torch, torchrec and the model code never load."""
    import subprocess
    import sys

    results = _results(_cells())
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "results.json").write_text(json.dumps(to_json(results)))
    code = ("import sys; from benchmark.cli import main; rc = main(['report', 's', '--runs-dir', sys.argv[1], "
            "'--html']); heavy = sorted(m for m in ('torch', 'torchrec', 'fbgemm_gpu', "
            "'benchmark.cells.train') if m in sys.modules); print(rc, heavy); sys.exit(rc or bool(heavy))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stdout.strip().endswith("0 []")
    assert (tmp_path / "s" / "report.html").exists()


def test_small_n_is_reported_honestly() -> None:
    """Issue 23 point 4: one seed prints n=1, not a zero-width interval; two seeds warn at the top; a metric
    without a value prints "undefined", never 0; slices show their sizes; synthetic data is a smoke test."""
    import dataclasses

    from benchmark.report.tables import render_markdown

    sized = [dataclasses.replace(c, test={**c.test, "all": {**c.test["all"], "n": 10.0, "n_pos": 4.0,
                                                          "n_items": 3.0, "n_users": 2.0, "n_gauc_users": 1.0}})
             for c in _cells()]
    one = [c for c in sized if c.seed == 0]
    md = render_markdown(_results(one), aggregate(one))
    assert "0.7200 (n=1)" in md and "± 0.0000" not in md and "**One seed:**" in md
    assert "| dlrm | id_only | cold | undefined | – | undefined | 0.7000 (n=1) |" in md
    assert "| all | 10 | 4 | 3 | 2 | 1 |" in md and "| cold | – | – | – | – | – |" in md
    two = [c for c in sized if c.seed < 2]
    md2 = render_markdown(_results(two), aggregate(two))
    assert "**Two seeds:**" in md2 and md2.index("**Two seeds:**") < md2.index("## Ranking metrics")
    assert "(n=1)" not in md2 and "smoke test" not in md2
    synthetic = dataclasses.replace(_results(sized), provenance=dataclasses.replace(_results(sized).provenance,
                                                                                    dataset="synthetic"))
    rows3 = aggregate(sized)
    assert "smoke test, not evidence" in render_markdown(synthetic, rows3)
    assert "**Two seeds:**" not in render_markdown(synthetic, rows3)
    assert "smoke test, not evidence" in headline_deltas(rows3, dataset="synthetic")
    assert "smoke test" not in headline_deltas(rows3, dataset="movielens-100k")
