"""`suite.device`: its spelling is checked when the config loads (no torch), the machine when the run starts."""

from __future__ import annotations

import pytest
import torch

from benchmark.config.suite import load_config
from benchmark.core.device import check_device_name, resolve_device
from benchmark.core.errors import ConfigError


def test_spelling_checked_at_load() -> None:
    assert load_config("synthetic-tiny").suite.device == "auto"
    assert load_config("synthetic-tiny", ["suite.device=cuda:1"]).suite.device == "cuda:1"
    with pytest.raises(ConfigError, match=r"suite.device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        load_config("synthetic-tiny", ["suite.device=gpu"])
    assert [check_device_name(n) for n in ("auto", "cpu", "cuda", "cuda:12", "cuda:", "CPU")] == [
        True, True, True, True, False, False]


def test_resolved_at_run_start() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():  # pragma: no cover - CI has no GPU
        assert resolve_device("auto").type == "cuda"
        return
    assert resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match=f"suite.device: '{name}' asked for CUDA but"):
            resolve_device(name)


def test_a_cuda_suite_stops_at_run_start_on_a_cpu_machine(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("this machine has a GPU")
    from benchmark.cli import main

    rc = main(["run", "synthetic-tiny", "--set", "suite.device=cuda", "--set", f"suite.runs_dir={tmp_path}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "qarm-bench: error: suite.device: 'cuda' asked for CUDA" in err and "Traceback" not in err
    assert not (tmp_path / "synthetic-tiny" / "artifacts").exists()  # nothing ran
