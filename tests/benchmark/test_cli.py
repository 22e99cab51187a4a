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
