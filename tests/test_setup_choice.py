"""scripts/setup.sh's stack choice (issue 24): the GPU stack when QARM_GPU is set; on a machine with an NVIDIA GPU
(nvidia-smi found) and no QARM_GPU, the CPU stack pinned by a note that benchmark/core/device.py reads; else the
CPU stack. `--print-choice` says which and installs nothing; a stand-in nvidia-smi (or none) is injected."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from benchmark.core.device import CPU_STACK_NOTE, GPU_INSTALL

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "setup.sh"


def choice(tmp_path: Path, *, nvidia_smi: bool, qarm_gpu: str) -> str:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: stand-in'\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "QARM_GPU"} | {
        "QARM_NVIDIA_SMI": str(fake) if nvidia_smi else str(tmp_path / "absent-nvidia-smi")}
    if qarm_gpu:
        env["QARM_GPU"] = qarm_gpu
    r = subprocess.run(["bash", str(SETUP), "--print-choice"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize(("nvidia_smi", "qarm_gpu", "want"), [
    (True, "1", "gpu"), (False, "1", "gpu"), (True, "", "cpu-pinned"), (False, "", "cpu")])
def test_stack_choice(tmp_path: Path, nvidia_smi: bool, qarm_gpu: str, want: str) -> None:
    assert choice(tmp_path, nvidia_smi=nvidia_smi, qarm_gpu=qarm_gpu) == want


def test_the_note_is_the_one_the_device_check_reads() -> None:
    text = SETUP.read_text()
    assert f"NOTE=$VENV/{CPU_STACK_NOTE}" in text  # benchmark/core/device.py looks for sys.prefix / CPU_STACK_NOTE
    assert text.count(GPU_INSTALL) >= 2  # the pinning message and the note name the GPU install command
