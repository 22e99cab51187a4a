"""The CLI in-process: exit codes, one-line user errors without tracebacks, help and version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import __version__
from benchmark.cli import main


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "qarm-bench run --quick" in out
    assert main([]) == 0


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert main(["run", "--force"]) == 2


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (None, "config file not found"),
        ("[rank\nepochs = 3\n", r"invalid TOML: .*line 1"),
        ("[rank]\nepochz = 3\n", r"rank\.epochz: unknown key"),
    ],
)
def test_config_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None,
                            pattern: str) -> None:
    path = tmp_path / "suite.toml"
    if content is not None:
        path.write_text(content)
    for cmd in ("run", "plan"):
        assert main([cmd, str(path)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 2
        import re

        assert re.search(pattern, err), err


def test_bad_override_and_force(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--set", "rank.epochs=many"]) == 2
    assert "rank.epochs: expected an integer" in capsys.readouterr().err
    assert main(["run", "--force", "everything", "--set", "suite.runs_dir=/nonexistent-never-used"]) == 2
    assert "--force everything: unknown stage" in capsys.readouterr().err


def test_debug_shows_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "run", str(tmp_path / "nope.toml")]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_console_script_and_module_are_the_same() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmark", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout
    script = Path(sys.executable).parent / "qarm-bench"
    if script.exists():  # installed by `pip install -e .`
        out2 = subprocess.run([str(script), "--version"], capture_output=True, text=True)
        assert out2.stdout == out.stdout


def test_the_console_entry_passes_main_s_exit_code_on() -> None:
    """`python -m benchmark` and the console script go through benchmark.cli.entry (main, then gc.freeze before
    the process exits): a user error still exits 2 with its message."""
    out = subprocess.run([sys.executable, "-m", "benchmark", "run", "no-such-suite"], capture_output=True, text=True)
    assert out.returncode == 2 and "no-such-suite" in out.stderr and "Traceback" not in out.stderr
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'qarm-bench = "benchmark.cli:entry"' in pyproject


def test_importing_the_cli_does_nothing() -> None:
    code = "import sys, benchmark.cli; print(sorted(m for m in ('torch','mlflow','torchrec','polars') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_user_errors_point_at_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 23 point 7: an unknown suite lists the packaged ones with a did-you-mean; bare `report` outside a
    runs folder hints --runs-dir; missing raw data names --root and data.root."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", "synthetic-tin"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'synthetic-tiny'?" in err and "packaged suites: " in err and "movielens-100k" in err
    assert main(["report"]) == 2
    assert "--runs-dir" in capsys.readouterr().err
    assert main(["plan", "movielens-100k", f"--set=data.root={tmp_path / 'nowhere'}"]) == 2
    err = capsys.readouterr().err
    assert "data.root" in err and "--root" in err and "Traceback" not in err


def test_bare_report_picks_the_most_recent_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from benchmark.report.write import pick_suite

    runs = tmp_path / "runs"
    for i, name in enumerate(("older", "newer")):
        (runs / name).mkdir(parents=True)
        (runs / name / "results.json").write_text("{}")
        os.utime(runs / name / "results.json", (1000 + i, 1000 + i))
    (runs / "cache").mkdir()  # a folder without results is not a suite
    assert pick_suite(runs) == "newer"
    assert "'newer' (the most recent of 2: newer, older)" in capsys.readouterr().err


def test_plan_estimates_wall_time_from_cached_epochs(tmp_path: Path) -> None:
    """Issue 23 point 6: a model with a cached cell is timed by its recorded epochs, another by the guess."""
    import json

    from benchmark.config.suite import load_config
    from benchmark.core.records import CellRecord, EpochRecord, to_json
    from benchmark.engine.plan import GUESS_EPOCH_SECONDS, PlannedCell, wall_estimate

    entry = tmp_path / "rank" / "k1"
    entry.mkdir(parents=True)
    history = tuple(EpochRecord(epoch=e, train_loss=0.5, val={}, seconds=s, samples_per_s=1.0)
                    for e, s in ((1, 2.0), (2, 4.0)))
    record = CellRecord(model="dlrm", variant="id_only", seed=0, key="k1", best_epoch=1, val_best={}, history=history,
                        test={})
    (entry / "result.json").write_text(json.dumps(to_json(record)))
    (entry / "_SUCCESS").write_text("")
    cfg = load_config("synthetic-tiny", ["suite.workers=2", "rank.epochs=3"])
    cells = [PlannedCell("id_only", m, s, f"{m}{s}", False, None, None) for m in ("dlrm", "din") for s in (0, 1)]
    est = wall_estimate(cfg, [*cells, PlannedCell("id_only", "sim", 0, "c", True, None, None)], tmp_path)
    # dlrm: 3 epochs x mean(2, 4) s, twice; din: 3 x the guess, twice; over 2 workers
    assert est.seconds == pytest.approx((2 * 3 * 3.0 + 2 * 3 * GUESS_EPOCH_SECONDS["din"]) / 2)
    assert est.measured == ("dlrm",) and est.guessed == ("din",) and est.cells == 4
    text = est.render()
    assert "from cached epoch timings: dlrm" in text and "per-model guess (no cached cell yet; " in text
    assert text.endswith("scaled to 100,000 interactions): din")  # no data size given: MovieLens-100K's


def test_quiet_keeps_only_the_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`run --quiet`: progress bars, status lines and the printed report are dropped; the summary line stays."""
    from benchmark.cli import build_parser, quiet_console

    assert build_parser().parse_args(["run", "synthetic-tiny", "--quiet"]).quiet
    with quiet_console():
        print("# QARM-Bench report: s\n| table |")
        sys.stderr.write("cells:  50%|#####     | 1/2\r[cells]  2 to train\n")
        sys.stderr.write("Done. Report: runs/s/report.md  Plots: runs/s/plots\nMLflow: sqlite:///runs/mlflow.db\n")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "Done. Report: runs/s/report.md  Plots: runs/s/plots\n"


def test_plan_of_a_sweep_says_its_estimates_do_not_add_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "synthetic-tiny", "--set", "suite.sweep_key=quantize.levels",
                 "--set", "suite.sweep_values=[1, 2]"]) == 0
    out = capsys.readouterr().out
    assert out.count("estimated wall time") == 2 and "sweep: 2 values" in out and "counted in each" in out
    assert main(["plan", "synthetic-tiny"]) == 0
    assert "sweep:" not in capsys.readouterr().out
