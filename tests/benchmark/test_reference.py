"""docs/reference-results.md: every figure on the page is its committed report.json's, the page is up to date,
suites without a committed run say "not yet run here", and a malformed reference is a typed error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.config.suite import packaged_configs
from benchmark.core.errors import QarmBenchError
from benchmark.report.reference import COLUMNS, add_reference, auc_rows, load_reference, render_reference_page

ROOT = Path(__file__).resolve().parents[2]
REF = ROOT / "docs" / "reference"
PAGE = ROOT / "docs" / "reference-results.md"


def _tables(page: str) -> dict[str, list[list[str]]]:
    """suite -> the body rows of its section's table, as cells."""
    out: dict[str, list[list[str]]] = {}
    suite = None
    for line in page.splitlines():
        if line.startswith("## "):
            suite = line[3:].strip()
            out[suite] = []
        elif suite and line.startswith("| ") and not line.startswith("| model |"):
            out[suite].append([c.strip() for c in line.strip("|").split("|")])
    return out


def test_every_figure_on_the_page_is_its_report_json() -> None:
    tables = _tables(PAGE.read_text(encoding="utf-8"))
    committed = sorted(p.name for p in REF.iterdir() if p.is_dir())
    assert sorted(tables) == committed and "movielens-100k" in committed
    for suite, body in tables.items():
        rows = json.loads((REF / suite / "report.json").read_text())
        want = auc_rows(rows)
        assert len(body) == len(want) > 0
        for cells, row in zip(body, want):
            assert cells[:3] == [row["model"], row["variant"], row["slice"]]
            for text, (_, key, _) in zip(cells[3:], COLUMNS):
                if row[key] is None:
                    assert text == "–", (suite, row["model"], row["variant"], row["slice"], key)
                else:
                    assert float(text) == pytest.approx(row[key], abs=0.5e-4), (suite, key, text, row[key])
            assert int(cells[-1]) == row["n_seeds"]


def test_the_page_is_up_to_date_and_lists_unrun_suites(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reference-results", "--check", "--out", str(PAGE), "--reference-dir", str(REF)]) == 0
    page = PAGE.read_text(encoding="utf-8")
    for cfg in packaged_configs():
        status = "reference run below" if (REF / cfg.stem).is_dir() else "not yet run here"
        assert f"| {cfg.stem} | {status} |" in page
    meta = load_reference(REF / "movielens-100k").meta
    assert meta.wall_time == "9:31" and "/usr/bin/time" in meta.wall_time_note and meta.git_sha.startswith("735ceec")
    assert meta.date == "2026-12-05" and meta.seeds == (0, 1, 2, 3, 4)  # the 5-replicate default (issue 21)


def test_write_then_check_and_a_broken_meta_is_a_typed_error(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "reference"
    shutil.copytree(REF, ref)
    out = tmp_path / "page.md"
    assert main(["reference-results", "--out", str(out), "--reference-dir", str(ref)]) == 0
    assert out.read_text(encoding="utf-8") == render_reference_page(ref) == PAGE.read_text(encoding="utf-8")
    (ref / "movielens-100k" / "report.json").write_text("[]\n")
    assert main(["reference-results", "--check", "--out", str(out), "--reference-dir", str(ref)]) == 1
    meta = json.loads((ref / "movielens-100k" / "meta.json").read_text())
    del meta["wall_time"]
    (ref / "movielens-100k" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(QarmBenchError, match=r"meta\.json: .*wall_time"):
        load_reference(ref / "movielens-100k")
    (ref / "no-such-suite").mkdir()
    capsys.readouterr()
    assert main(["reference-results", "--out", str(out), "--reference-dir", str(ref)]) == 2
    assert "no-such-suite: not a packaged suite" in capsys.readouterr().err


def _run_folder(tmp: Path, **changes: object) -> Path:
    """A finished run of the packaged default suite: its results.json (the committed reference's rows) and
    report.json."""
    import dataclasses

    from benchmark.core.records import Provenance, SuiteResults, to_json

    prov = Provenance(config_hash="cafe", git_sha="abc123", dataset="movielens-100k", dataset_fingerprint="f",
                      split="per_user_temporal", seeds=(0, 1, 2, 3, 4), date="2026-12-05T20:01:02+00:00", version="0")
    res = SuiteResults(suite="movielens-100k", label="", variants=("id_only",), models=("dlrm",), confidence=0.95,
                       provenance=prov, config={}, data_stats={}, item_side=(), cells=(), run_id="20261205T200102Z-aa",
                       overrides={"suite.runs_dir": "/somewhere"})
    res = dataclasses.replace(res, **changes)
    run = tmp / "runs" / res.suite / res.run_id
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(to_json(res)))
    shutil.copy(REF / "movielens-100k" / "report.json", run / "report.json")
    return run


def test_add_copies_a_run_with_its_provenance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "reference"
    run = _run_folder(tmp_path)
    out = tmp_path / "page.md"
    args = ["reference-results", "--out", str(out), "--reference-dir", str(ref), "--add", str(run),
            "--invocation", "make run", "--wall-time", "9:41", "--wall-time-note", "by /usr/bin/time, idle",
            "--machine", "2 cores"]
    assert main(args) == 0
    got = load_reference(ref / "movielens-100k")
    assert (got.meta.git_sha, got.meta.config_hash, got.meta.seeds, got.meta.date, got.meta.wall_time) == \
        ("abc123", "cafe", (0, 1, 2, 3, 4), "2026-12-05", "9:41")
    assert got.meta.source == "<runs_dir>/movielens-100k/20261205T200102Z-aa/report.json"  # no machine path
    assert got.rows == load_reference(REF / "movielens-100k").rows
    assert "## movielens-100k" in out.read_text(encoding="utf-8")
    # a quick run, a --set run or a missing --machine is refused, exit 2, nothing written
    quick = _run_folder(tmp_path / "q", quick=True)
    capsys.readouterr()
    assert main([*args[:6], str(quick), *args[7:]]) == 2
    assert "a reference run is the packaged suite as it is" in capsys.readouterr().err
    assert main(args[:-2]) == 2
    assert "expected --machine" in capsys.readouterr().err


def test_add_a_sweep_takes_every_value_and_the_page_has_a_table_per_value(tmp_path: Path) -> None:
    """A sweep's run folder (runs/<suite>/<run-id>/sweep/<key>=<value>/): every value's rows, labelled, one table
    each, every figure still its report.json's (the page parsed back as the committed page is)."""
    base = _run_folder(tmp_path / "src")
    res_json = json.loads((base / "results.json").read_text())
    run = tmp_path / "runs" / "fashion-mnist-rec" / "20261205T230000Z-bb"
    rows = json.loads((REF / "movielens-100k" / "report.json").read_text())
    for i, value in enumerate(("text", "image")):
        folder = run / "sweep" / f"encoder.modalities={value}"
        folder.mkdir(parents=True)
        res_json.update(suite="fashion-mnist-rec", label=f"encoder.modalities={value}", run_id=run.name,
                        config={"suite": {"sweep_values": ["text", "image"]}})  # not the folders' name order
        (folder / "results.json").write_text(json.dumps(res_json))
        shifted = [dict(r, mean=None if r["mean"] is None else r["mean"] + i / 10) for r in rows]
        (folder / "report.json").write_text(json.dumps(shifted))
    ref = tmp_path / "reference"
    added = load_reference(add_reference(
        run, invocation="qarm-bench run fashion-mnist-rec", wall_time="30:00", wall_time_note="under load",
        machine="2 cores", reference_dir=ref))
    assert {r["sweep_value"] for r in added.rows} == {"encoder.modalities=text", "encoder.modalities=image"}
    assert len(added.rows) == 2 * len(rows) and "sweep/<value>/report.json" in added.meta.source
    page = render_reference_page(ref)
    assert page.index("### encoder.modalities=text") < page.index("### encoder.modalities=image")
    body = _tables(page)["fashion-mnist-rec"]
    want = auc_rows(added.rows)
    assert len(body) == len(want) and want[0]["sweep_value"] == "encoder.modalities=text"
    for cells, row in zip(body, want):
        assert cells[:3] == [row["model"], row["variant"], row["slice"]]
        if row["mean"] is not None:
            assert float(cells[3]) == pytest.approx(row["mean"], abs=0.5e-4)
    # one value's folder alone is refused, naming the sweep's folder
    with pytest.raises(QarmBenchError, match="expected the sweep's run folder"):
        add_reference(
            run / "sweep" / "encoder.modalities=text", invocation="x", wall_time="1:00", wall_time_note="x",
            machine="x", reference_dir=ref)
