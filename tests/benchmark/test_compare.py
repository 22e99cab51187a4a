"""`qarm-bench compare`: the primary contrasts of several runs side by side, on hand-written results.json files
(the deltas computed by hand; p-values and verdicts are those of benchmark.report.primary on the same values)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core.errors import QarmBenchError
from benchmark.core.records import CellRecord, Provenance, SuiteResults, to_json
from benchmark.core.runs import point_latest
from benchmark.report.compare import compare_runs, compare_targets, per_seed_auc
from benchmark.report.primary import PrimaryHypothesis, primary_family

# seed -> AUC on `all`; cold = all - 0.1. aligned_codes beats every baseline by a per-seed margin set by hand.
AUC = {"id_only": (0.70, 0.71, 0.69), "frozen_codes": (0.71, 0.72, 0.70), "random_codes": (0.69, 0.70, 0.68),
       "shuffled_codes": (0.70, 0.70, 0.70), "aligned_codes": (0.72, 0.74, 0.70)}


def _results(run_id: str, shift: float = 0.0, label: str = "") -> SuiteResults:
    cells = tuple(CellRecord(model="dlrm", variant=v, seed=s, key=f"{v}{s}", best_epoch=1, val_best={}, history=(),
                             test={"all": {"auc": a + (shift if v == "aligned_codes" else 0.0)},
                                   "cold": {"auc": a - 0.1 + (shift if v == "aligned_codes" else 0.0)}})
                  for v, aucs in AUC.items() for s, a in enumerate(aucs))
    prov = Provenance(config_hash="abc", git_sha="123", dataset="d", dataset_fingerprint="f", split="s",
                      seeds=(0, 1, 2), date="2026-12-05", version="0")
    return SuiteResults(suite="s", label=label, variants=tuple(AUC), models=("dlrm",), confidence=0.95,
                        provenance=prov, config={}, data_stats={}, item_side=(), cells=cells, run_id=run_id,
                        overrides={"rank.epochs": "2"} if shift else {})


def _write(folder: Path, results: SuiteResults) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(to_json(results)))
    return folder


A, B = "20261205T172301Z-aaaaaa", "20261205T172302Z-bbbbbb"


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    _write(tmp_path / "s" / A, _results(A))
    _write(tmp_path / "s" / B, _results(B, shift=0.01))
    point_latest(tmp_path / "s", B)
    sweep = tmp_path / "s" / "20261205T172303Z-cccccc" / "sweep"
    for k in (1, 2):
        _write(sweep / f"rank.epochs={k}", _results("20261205T172303Z-cccccc", shift=0.001 * k,
                                                    label=f"rank.epochs={k}"))
    return tmp_path


def test_deltas_are_the_paired_means_and_the_family_is_the_primary_one(runs: Path) -> None:
    [a, b] = compare_runs([runs / "s" / A, runs / "s" / B])
    rec = {(r.slice, r.baseline): r for r in a.family.records}
    assert rec[("all", "id_only")].delta == pytest.approx((0.02 + 0.03 + 0.01) / 3)
    assert rec[("all", "shuffled_codes")].delta == pytest.approx((0.02 + 0.04 + 0.00) / 3)
    assert rec[("cold", "frozen_codes")].delta == pytest.approx((0.01 + 0.02 + 0.00) / 3)
    assert a.family.size == 8 and all(r.family_size == 8 for r in a.family.records)  # 1 model x 2 slices x 4
    # the same records benchmark.report.primary gives the run's per-seed AUCs
    same = primary_family(PrimaryHypothesis(), per_seed_auc(_results(A)), ("dlrm",))
    assert a.family == same
    # B's aligned_codes is 0.01 higher on every seed: every delta moves by 0.01, the interval with it
    rb = {(r.slice, r.baseline): r for r in b.family.records}
    for key, r in rec.items():
        assert rb[key].delta == pytest.approx(r.delta + 0.01)
        assert rb[key].ci_high - rb[key].ci_low == pytest.approx(r.ci_high - r.ci_low)
    assert b.overrides == {"rank.epochs": "2"} and b.label == f"s {B}"


def test_targets_run_folder_suite_latest_and_sweep_values(runs: Path) -> None:
    assert compare_targets(str(runs / "s" / A), runs) == [runs / "s" / A]
    assert compare_targets("s", runs) == [runs / "s" / B]  # a suite: its latest complete run
    assert compare_targets(str(runs / "s"), runs) == [runs / "s" / B]
    sweep_run = runs / "s" / "20261205T172303Z-cccccc"
    values = [sweep_run / "sweep" / "rank.epochs=1", sweep_run / "sweep" / "rank.epochs=2"]
    assert compare_targets(str(sweep_run), runs) == values
    assert compare_targets(str(sweep_run / "sweep"), runs) == values
    with pytest.raises(QarmBenchError, match="nope: expected a run folder holding results.json"):
        compare_targets("nope", runs)


def test_cli_markdown_json_and_html(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep_run = runs / "s" / "20261205T172303Z-cccccc"
    assert main(["compare", str(runs / "s" / A), "s", str(sweep_run), "--runs-dir", str(runs)]) == 0
    md = capsys.readouterr().out
    lines = [ln for ln in md.splitlines() if ln.startswith("| dlrm |")]
    assert len(lines) == 4 * 2 * 4  # 4 runs x 2 slices x 4 contrasts
    assert f"| dlrm | all | aligned_codes vs id_only | s {A} | 3 | +0.0200 [" in md
    assert "s 20261205T172303Z-cccccc [rank.epochs=2]" in md and "1 override(s): rank.epochs=2" in md
    out = tmp_path / "out" / "compare.html"
    assert main(["compare", str(runs / "s" / A), "s", "--runs-dir", str(runs), "--json", "--html", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in data["runs"]] == [A, B]
    first = data["contrasts"][0]
    assert (first["run"], first["model"], first["slice"], first["baseline"]) == (f"s {A}", "dlrm", "all", "id_only")
    assert first["delta"] == pytest.approx(0.02) and first["family_size"] == 8 and "p_holm" in first
    page = out.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 1 and "<script" not in page and "http" not in page
    assert page.count("<tr") == 1 + 2 * 2 * 4


def test_a_bad_argument_is_a_one_line_error_exit_2(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "s", "nope", "--runs-dir", str(runs)]) == 2
    assert capsys.readouterr().err.splitlines()[0].startswith("qarm-bench: error: nope: expected a run folder")


def test_a_missing_contrast_stays_in_the_family_as_a_dash(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = _results(A)
    res = dataclasses.replace(res, cells=tuple(c for c in res.cells if c.variant != "random_codes"))
    folder = _write(runs / "t" / A, res)
    [run] = compare_runs([folder])
    miss = next(r for r in run.family.records if r.baseline == "random_codes" and r.slice == "all")
    assert miss.delta is None and miss.p_source == "untestable" and run.family.size == 8
    assert main(["compare", str(folder)]) == 0
    assert f"| dlrm | all | aligned_codes vs random_codes | s {A} | 0 | – | – | – | inconclusive |" in \
        capsys.readouterr().out


def test_compare_imports_no_torch(runs: Path) -> None:
    code = ("import sys; from benchmark.cli import main; "
            f"rc = main(['compare', {str(runs / 's')!r}, '--json']); "
            "print(rc, [m for m in ('torch', 'torchrec', 'mlflow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0 []"


@pytest.mark.slow
def test_two_tiny_real_runs_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import benchmark

    runs = tmp_path / "runs"
    sets = [f"suite.runs_dir={runs}", f"suite.tracking_uri=sqlite:///{runs / 'mlflow.db'}", "suite.seeds=[0, 1]",
            'suite.models=["dlrm"]', 'suite.variants=["id_only", "frozen_codes", "aligned_codes"]']
    first = benchmark.run("synthetic-tiny", [*sets, "rank.epochs=1"], progress=False)
    second = benchmark.run("synthetic-tiny", [*sets, "rank.epochs=2"], progress=False)
    assert first.run_id != second.run_id and second.overrides["rank.epochs"] == "2"
    suite = runs / "synthetic-tiny"
    assert (suite / "latest").resolve() == (suite / second.run_id).resolve()
    capsys.readouterr()  # the runs' own reports
    assert main(["compare", str(suite / first.run_id), "synthetic-tiny", "--runs-dir", str(runs), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in data["runs"]] == [first.run_id, second.run_id]
    got = {(c["run"].split()[1], c["slice"], c["baseline"]): c["delta"] for c in data["contrasts"]}
    for res in (first, second):
        auc = {(c.variant, c.seed): c.test["all"]["auc"] for c in res.cells}
        want = sum(auc[("aligned_codes", s)] - auc[("id_only", s)] for s in (0, 1)) / 2
        assert got[(res.run_id, "all", "id_only")] == pytest.approx(want)


def test_a_manifest_from_before_run_folders_is_compared_too(tmp_path: Path) -> None:
    old = _write(tmp_path / "s", _results(""))  # results.json directly in runs/<suite>/, no `latest`
    assert compare_targets("s", tmp_path) == [old]
    [run] = compare_runs([old])
    assert run.label == "s (before run folders)" and run.run_id == "" and run.family.size == 8
