"""One folder per invocation (benchmark.core.runs): run ids, `latest`, `report --run`, the invocation header,
and load_results reading the latest complete run. Hand-written manifests; no training."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

import benchmark
from benchmark.cli import main
from benchmark.config.suite import invocation_overrides, load_config, quicken
from benchmark.core.errors import QarmBenchError
from benchmark.core.records import CellRecord, Provenance, SuiteResults, to_json
from benchmark.core.runs import RUN_ID, latest_run_id, new_run_id, point_latest, resolve_run, run_ids
from benchmark.report.html import render_html
from benchmark.report.tables import aggregate, render_markdown

NOW = dt.datetime(2026, 12, 5, 17, 23, 1, tzinfo=dt.UTC)


def _results(run_id: str = "", auc: float = 0.72, **kw: object) -> SuiteResults:
    prov = Provenance(config_hash="abc", git_sha="123", dataset="d", dataset_fingerprint="f", split="s",
                      seeds=(0,), date="2026-12-05", version="0")
    cells = tuple(CellRecord(model="dlrm", variant=v, seed=0, key=v, best_epoch=1, val_best={}, history=(),
                             test={"all": {"auc": a, "gauc": a, "logloss": 0.6}})
                  for v, a in (("id_only", 0.70), ("aligned_codes", auc)))
    return SuiteResults(suite="s", label="", variants=("id_only", "aligned_codes"), models=("dlrm",),
                        confidence=0.95, provenance=prov, config={}, data_stats={}, item_side=(), cells=cells,
                        run_id=run_id, **kw)  # type: ignore[arg-type]


def _write(folder: Path, results: SuiteResults) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(to_json(results)))


def test_run_ids_are_sortable_stamps_with_the_overrides_hash_and_never_reused(tmp_path: Path) -> None:
    a = new_run_id(tmp_path, {"rank.epochs": "3"}, False, NOW)
    assert RUN_ID.match(a) and a.startswith("20261205T172301Z-")
    assert new_run_id(tmp_path, {"rank.epochs": "3"}, False, NOW) == a  # the same invocation, the same hash
    assert new_run_id(tmp_path, {"rank.epochs": "4"}, False, NOW) != a
    assert new_run_id(tmp_path, {"rank.epochs": "3"}, True, NOW) != a  # --quick changes it
    (tmp_path / a).mkdir()
    b = new_run_id(tmp_path, {"rank.epochs": "3"}, False, NOW)
    assert b == f"{a}.1" and RUN_ID.match(b)
    later = new_run_id(tmp_path, {}, False, NOW + dt.timedelta(seconds=1))
    (tmp_path / b).mkdir()
    (tmp_path / later).mkdir()
    (tmp_path / "artifacts").mkdir()
    assert run_ids(tmp_path) == sorted([a, b, later]) == [a, b, later]


def test_latest_is_a_symlink_replaced_in_place_and_resolve_reads_it(tmp_path: Path) -> None:
    for rid in ("20261205T172301Z-aaaaaa", "20261205T172302Z-bbbbbb"):
        (tmp_path / rid).mkdir()
    point_latest(tmp_path, "20261205T172301Z-aaaaaa")
    point_latest(tmp_path, "20261205T172302Z-bbbbbb")
    assert (tmp_path / "latest").is_symlink() and latest_run_id(tmp_path) == "20261205T172302Z-bbbbbb"
    assert resolve_run(tmp_path) == tmp_path / "20261205T172302Z-bbbbbb"
    assert resolve_run(tmp_path, "20261205T172301Z-aaaaaa") == tmp_path / "20261205T172301Z-aaaaaa"
    assert not list(tmp_path.glob(".latest*"))  # no temporary left behind
    with pytest.raises(QarmBenchError, match=r"no run 'nope'; the runs present are: 20261205T172301Z-aaaaaa, "
                                             r"20261205T172302Z-bbbbbb"):
        resolve_run(tmp_path, "nope")


def test_a_latest_file_holding_the_id_is_read_too(tmp_path: Path) -> None:
    (tmp_path / "20261205T172301Z-aaaaaa").mkdir()
    (tmp_path / "latest").write_text("20261205T172301Z-aaaaaa\n")
    assert resolve_run(tmp_path) == tmp_path / "20261205T172301Z-aaaaaa"


def test_without_latest_an_old_layout_is_read_and_unfinished_runs_are_named(tmp_path: Path) -> None:
    _write(tmp_path / "old", _results())
    assert resolve_run(tmp_path / "old") == tmp_path / "old"  # results.json in runs/<suite>/ (before run folders)
    (tmp_path / "new" / "20261205T172301Z-aaaaaa").mkdir(parents=True)
    with pytest.raises(QarmBenchError, match="no complete run yet.*20261205T172301Z-aaaaaa"):
        resolve_run(tmp_path / "new")
    with pytest.raises(QarmBenchError, match="no results for suite 'none' yet"):
        resolve_run(tmp_path / "none")


def test_report_reads_latest_or_run_and_an_unknown_run_is_a_one_line_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "s"
    old, new = "20261205T172301Z-aaaaaa", "20261205T172302Z-bbbbbb"
    _write(suite / old, _results(old, auc=0.71))
    _write(suite / new, _results(new, auc=0.75))
    point_latest(suite, new)
    assert main(["report", "s", "--runs-dir", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert next(r["mean"] for r in rows if r["variant"] == "aligned_codes" and r["slice"] == "all"
                and r["metric"] == "auc") == pytest.approx(0.75)
    assert (suite / new / "report.md").exists() and not (suite / old / "report.md").exists()
    assert main(["report", "s", "--runs-dir", str(tmp_path), "--run", old]) == 0
    assert f"Run {old}" in capsys.readouterr().out and (suite / old / "report.html").exists()
    assert main(["report", "s", "--runs-dir", str(tmp_path), "--run", "2026"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"qarm-bench: error: {suite}: no run '2026'; the runs present are: {old}, {new}"


def test_report_of_a_sweep_run_renders_every_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "s" / "20261205T172301Z-aaaaaa"
    for label in ("rank.epochs=1", "rank.epochs=2"):
        _write(run / "sweep" / label, dataclasses.replace(_results(run.name), label=label))
    point_latest(tmp_path / "s", run.name)
    assert main(["report", "s", "--runs-dir", str(tmp_path), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"rank.epochs=1", "rank.epochs=2"}
    assert (run / "sweep" / "rank.epochs=2" / "report.md").exists()
    with pytest.raises(QarmBenchError, match=r"is a sweep; read one of its values.*rank\.epochs=1, rank\.epochs=2"):
        benchmark.load_results("s", runs_dir=tmp_path)
    assert benchmark.load_results(run / "sweep" / "rank.epochs=1").label == "rank.epochs=1"


def test_load_results_reads_latest(tmp_path: Path) -> None:
    old, new = "20261205T172301Z-aaaaaa", "20261205T172302Z-bbbbbb"
    _write(tmp_path / "s" / old, _results(old))
    _write(tmp_path / "s" / new, _results(new))
    point_latest(tmp_path / "s", old)  # `latest` decides, not the newest folder (new is unfinished, say)
    assert benchmark.load_results("s", runs_dir=tmp_path).run_id == old
    assert benchmark.load_results("s", runs_dir=tmp_path, run_id=new).run_id == new


def test_quick_and_set_are_in_the_report_header_with_every_key() -> None:
    res = _results("20261205T172301Z-aaaaaa", quick=True, overrides={"rank.epochs": "2", "suite.seeds": "[0]"})
    md = render_markdown(res, aggregate(res.cells))
    head = md.splitlines()[2]
    assert head.startswith("Run 20261205T172301Z-aaaaaa: **--quick**")
    assert "2 setting(s) overridden by --set and --quick: `rank.epochs=2`, `suite.seeds=[0]`" in head
    page = render_html(res, aggregate(res.cells), Path("."))
    assert "<p><strong>Run 20261205T172301Z-aaaaaa: --quick" in page and "rank.epochs=2, suite.seeds=[0]" in page
    plain = _results("20261205T172301Z-aaaaaa")
    assert "the suite as packaged (no --quick, no --set)" in render_markdown(plain, aggregate(plain.cells))
    old = render_markdown(_results(), aggregate(plain.cells)).splitlines()
    assert not any(line.startswith("Run ") for line in old)  # an old manifest: no invocation line


def test_invocation_overrides_lists_each_set_then_what_quick_changed() -> None:
    base = load_config("synthetic-tiny", ["rank.epochs=5"])
    assert invocation_overrides(base, ["rank.epochs=5"], False) == {"rank.epochs": "5"}
    got = invocation_overrides(base, ["rank.epochs=5"], True)
    assert got["rank.epochs"] == str(quicken(base).rank.epochs) == "1"  # --quick's value wins: it applied last
    assert got["suite.seeds"] == json.dumps(list(quicken(base).suite.seeds))
    assert set(got) >= {"rank.epochs", "suite.seeds"}
