"""`suite.device`: its spelling is checked when the config loads (no torch), the machine when the run starts."""

from __future__ import annotations

import pytest
import torch

from benchmark.config.suite import load_config
from benchmark.core.device import (
    GPU_INSTALL,
    GpuStack,
    check_cuda_stack,
    check_device_name,
    probe_gpu_stack,
    resolve_device,
    stack_problems,
)
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


# ---- the stack on CUDA (issue 24): the facts are injected, so this runs on a CPU machine ----------------

GOOD = GpuStack(fbgemm="cuda", faiss_gpus=1)


@pytest.mark.parametrize(("stack", "said"), [
    (GpuStack("cpu", 1), "TorchRec's fbgemm ops have no CUDA kernels (fbgemm-gpu-cpu is installed)"),
    (GpuStack("missing", 1), "fbgemm_gpu is not installed"),
    (GpuStack("cuda", 0), "faiss sees no GPU (faiss-cpu)"),
    (GpuStack("cuda", None), "faiss is not installed"),
    (GpuStack("cpu", 0), "TorchRec's fbgemm ops have no CUDA kernels (fbgemm-gpu-cpu is installed); faiss sees no "
                         "GPU (faiss-cpu)"),
])
def test_a_cpu_stack_on_cuda_stops_with_the_install_command(stack: GpuStack, said: str) -> None:
    for name in ("cuda", "cuda:0", "auto"):
        with pytest.raises(ConfigError) as e:
            check_cuda_stack(name, stack)
        msg = str(e.value)
        assert msg.startswith(f"suite.device: {name!r} runs on CUDA but {said}") and "\n" not in msg
        assert f"`{GPU_INSTALL}`" in msg and GPU_INSTALL == "QARM_GPU=1 bash scripts/setup.sh"
    assert check_cuda_stack("cuda", GOOD) == check_cuda_stack("auto", GOOD) == "cuda"


def test_setup_pinned_cpu_stack_makes_auto_the_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    pinned = GpuStack("cpu", 0, cpu_note="see /venv/qarm-cpu-stack")
    assert check_cuda_stack("auto", pinned) == "cpu"
    err = capsys.readouterr().err
    assert "suite.device 'auto' -> cpu" in err and "/venv/qarm-cpu-stack" in err and GPU_INSTALL in err
    with pytest.raises(ConfigError, match="setup.sh installed the CPU stack here .see /venv/qarm-cpu-stack."):
        check_cuda_stack("cuda", pinned)  # asked for CUDA by name: still stops


def test_resolve_device_checks_the_stack_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU 'seen' by torch (stand-ins), the stack probed on that GPU's index."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    asked: list[int] = []

    def probe(stack: GpuStack) -> object:
        return lambda index: asked.append(index) or stack

    assert resolve_device("cuda:1", probe(GOOD)) == torch.device("cuda", 1) and asked == [1]
    with pytest.raises(ConfigError, match="suite.device: 'cuda' runs on CUDA but faiss sees no GPU"):
        resolve_device("cuda", probe(GpuStack("cuda", 0)))
    assert resolve_device("auto", probe(GpuStack("cpu", 0, "see note"))) == torch.device("cpu")
    assert resolve_device("cpu", probe(GOOD)) == torch.device("cpu") and asked == [1, 0, 0]


def test_probe_on_this_machine_names_the_installed_packages() -> None:
    """Here (fbgemm-gpu-cpu, faiss-cpu, the CI stack) the probe finds the CPU stack without touching CUDA."""
    import importlib.metadata as md

    stack = probe_gpu_stack()
    try:
        md.version("fbgemm-gpu-cpu")
        assert stack.fbgemm == "cpu"
    except md.PackageNotFoundError:  # pragma: no cover - a GPU install
        assert stack.fbgemm in ("cuda", "missing")
    if not torch.cuda.is_available():
        assert stack.faiss_gpus == 0 and stack_problems(stack)
