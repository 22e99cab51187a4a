#!/usr/bin/env bash
# The GPU check: every GPU path (encoders, alignment, U2I, RQ-VAE, the rankers' dense parts, metrics, faiss GPU
# k-means, DDP alignment, DMP on all visible GPUs, RankBatch moves) against the same code on the CPU, with
# throughput. A few minutes on a CUDA machine; steps whose packages are missing say so and are skipped. Runs
# from the source tree (no install).
#   bash scripts/gpu_check.sh              all steps
#   bash scripts/gpu_check.sh --quick      small sizes (about a minute)
#   bash scripts/gpu_check.sh align dmp    some steps
#   bash scripts/gpu_check.sh --dry-run    CPU against CPU (checks the script, not the GPU)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$PY" scripts/gpu_check.py "$@"
