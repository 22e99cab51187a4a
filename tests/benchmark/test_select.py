"""`qarm-bench select`: a sweep's value chosen on validation figures, test read once for the chosen value only
(benchmark/report/select.py), on hand-written results.json files whose validation and test orders disagree."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core.errors import QarmBenchError
from benchmark.core.records import CellRecord, Provenance, SuiteResults, to_json
from benchmark.report.select import select_sweep

# value -> per seed (validation AUC of aligned_codes, its test AUC on all); test order is the reverse of validation
VALUES = {"1": ((0.70, 0.71, 0.72), (0.80, 0.81, 0.82)),
          "2": ((0.75, 0.76, 0.74), (0.70, 0.71, 0.69)),
          "3": ((0.73, 0.73, 0.73), (0.75, 0.75, 0.75))}
ID_ONLY_TEST = (0.66, 0.68, 0.67)
# value -> per seed validation AUC of aligned_codes on the validation cold slice (data.split.val_cold_item_frac)
COLD_VAL = {"1": (0.60, 0.61, 0.62), "2": (0.55, 0.56, 0.54), "3": (0.50, 0.51, 0.52)}


def _results(value: str) -> SuiteResults:
    val, test = VALUES[value]
    cells = [CellRecord(model="dlrm", variant="aligned_codes", seed=s, key=f"a{s}", best_epoch=1,
                        val_best={"auc": val[s], "logloss": 1 - val[s]}, history=(),
                        val_slices={"cold": {"auc": COLD_VAL[value][s], "n": 40.0}},
                        test={"all": {"auc": test[s]}, "cold": {"auc": test[s] - 0.1}}) for s in range(3)]
    cells += [CellRecord(model="dlrm", variant="id_only", seed=s, key=f"i{s}", best_epoch=1, val_best={"auc": 0.5},
                         history=(), test={"all": {"auc": ID_ONLY_TEST[s]}, "cold": {"auc": 0.5}}) for s in range(3)]
    prov = Provenance(config_hash="abc", git_sha="123", dataset="d", dataset_fingerprint="f", split="s",
                      seeds=(0, 1, 2), date="2026-12-05", version="0")
    return SuiteResults(suite="sw", label=f"quantize.levels={value}", variants=("id_only", "aligned_codes"),
                        models=("dlrm",), confidence=0.95, provenance=prov,
                        config={"suite": {"sweep_key": "quantize.levels", "sweep_values": ["3", "1", "2"]}},
                        data_stats={}, item_side=(),
                        cells=tuple(cells), run_id="20261205T172303Z-cccccc")


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sw" / "20261205T172303Z-cccccc" / "sweep"
    for v in VALUES:
        (root / f"quantize.levels={v}").mkdir(parents=True)
        (root / f"quantize.levels={v}" / "results.json").write_text(json.dumps(to_json(_results(v))))
    return root


def test_the_choice_is_made_on_validation_and_the_test_delta_is_the_chosen_values(sweep: Path) -> None:
    folders = sorted(sweep.iterdir())
    sel = select_sweep(folders, "dlrm", "aligned_codes")
    # listed in the sweep's order (suite.sweep_values = 3, 1, 2), not the folders' name order
    assert [v.label[-1] for v in sel.values] == ["3", "1", "2"]
    assert [v.mean_val for v in sel.values] == pytest.approx([0.73, 0.71, 0.75])
    assert sel.values[sel.chosen].label == "quantize.levels=2"  # best on validation, worst on test
    assert sel.slice == "all"  # the slice that decided, not the last test slice read
    all_ = next(t for t in sel.test if t.slice == "all")
    assert all_.mean == pytest.approx(0.70)
    assert all_.delta == pytest.approx(0.70 - 0.67)  # (0.04 + 0.03 + 0.02) / 3
    assert all_.ci_low < all_.delta < all_.ci_high and all_.n == 3
    # logloss: lower is better, the same order here
    assert select_sweep(folders, "dlrm", "aligned_codes", "logloss").chosen == sel.chosen


def test_cli_prints_only_the_chosen_values_test_figures(sweep: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["select", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out.count("**chosen**") == 1 and "| quantize.levels=2 | 0.7500 |" in out
    assert "+0.0300" in out and "0.8100" not in out  # value 1's test AUC is never printed


def test_bad_input_names_what_is_missing(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(QarmBenchError, match="no dlrm/metadata cells"):
        select_sweep(sorted(sweep.iterdir()), "dlrm", "metadata")
    with pytest.raises(QarmBenchError, match="no validation 'ndcg'"):
        select_sweep(sorted(sweep.iterdir()), "dlrm", "aligned_codes", "ndcg")
    with pytest.raises(QarmBenchError, match="expected a sweep"):
        select_sweep([sorted(sweep.iterdir())[0]], "dlrm", "aligned_codes")
    assert main(["select", str(tmp_path / "nothing")]) == 2
    assert "expected a run folder" in capsys.readouterr().err


def test_cold_slice_decides_on_the_validation_cold_rows(sweep: Path) -> None:
    folders = sorted(sweep.iterdir())
    sel = select_sweep(folders, "dlrm", "aligned_codes", slice_name="cold")
    assert [v.mean_val for v in sel.values] == pytest.approx([0.51, 0.61, 0.55])
    assert sel.values[sel.chosen].label == "quantize.levels=1" and sel.slice == "cold"


def test_incumbent_stays_unless_beaten_with_an_interval_clear_of_zero(sweep: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    folders = sorted(sweep.iterdir())
    # all rows: value 2 leads value 3 by +0.02, +0.03, +0.01 (t 3.5 on 2 df, interval includes 0): 3 stays
    kept = select_sweep(folders, "dlrm", "aligned_codes", incumbent="3")
    assert kept.values[kept.best].label == "quantize.levels=2"
    assert kept.values[kept.chosen].label == "quantize.levels=3" and kept.incumbent == kept.chosen
    d, _, lo, hi = kept.margin
    assert d == pytest.approx(0.02) and lo < 0 < hi
    # the test figures read are the kept value's: its all-row AUC 0.75
    assert next(t for t in kept.test if t.slice == "all").mean == pytest.approx(0.75)
    # cold rows: value 1 leads value 3 by exactly 0.10 on every seed: beaten, 1 is chosen
    beaten = select_sweep(folders, "dlrm", "aligned_codes", slice_name="cold", incumbent="quantize.levels=3")
    assert beaten.values[beaten.chosen].label == "quantize.levels=1"
    assert beaten.margin[2] == pytest.approx(0.10)
    # the incumbent the best: no margin
    assert select_sweep(folders, "dlrm", "aligned_codes", incumbent="2").margin is None
    assert main(["select", str(sweep), "--incumbent", "3"]) == 0
    out = capsys.readouterr().out
    assert "not beaten, it stays" in out and "| quantize.levels=3 | 0.7300 | 0.7300, 0.7300, 0.7300 | **chosen**, in use |" in out
    with pytest.raises(QarmBenchError, match="not a value of this sweep"):
        select_sweep(folders, "dlrm", "aligned_codes", incumbent="7")


def test_cold_slice_without_a_validation_cold_draw_says_how_to_get_one(sweep: Path, tmp_path: Path) -> None:
    folder = tmp_path / "v"
    folder.mkdir()
    res = _results("1")
    cells = tuple(dataclasses.replace(c, val_slices={}) for c in res.cells)
    (folder / "results.json").write_text(json.dumps(to_json(dataclasses.replace(res, cells=cells))))
    with pytest.raises(QarmBenchError, match="val_cold_item_frac > 0"):
        select_sweep([folder, *sorted(sweep.iterdir())], "dlrm", "aligned_codes", slice_name="cold")
