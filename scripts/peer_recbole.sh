#!/usr/bin/env bash
# Peer parity with RecBole 1.2.1 (issue 11 point 3; docs/peer-parity.md has the settings and the table).
#   bash scripts/peer_recbole.sh                      build .peer-venv beside .venv (idempotent: a second run is quick)
#   bash scripts/peer_recbole.sh run --out runs/peer [peer_recbole.py options, e.g. --models DeepFM --seeds 0]
#       exports movielens-100k (global temporal split) through our .venv into OUT/data/, then trains the
#       peers there with .peer-venv's python and writes OUT/peer_recbole.json
#
# RecBole 1.2.1 needs numpy < 2 (it sets np.float = np.float_) and pandas < 3 (it fills NaN in place on
# column views), which our stack does not have, so it gets its own environment. Everything is installed
# with --no-deps from the pinned list below (pip resolves nothing, least of all torch): exactly what
# `import recbole`, DeepFM, DIN and RecBole's Trainer need. recbole's other declared dependencies (ray,
# thop, psutil, plotly, tabulate) are only used by its quick-start, hyper-tuning and FLOPs helpers, which
# scripts/peer_recbole.py does not call, so `pip check` lists them as missing: expected.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=.peer-venv
STAMP=$VENV/.peer-setup-stamp
PINS=(
  recbole==1.2.1
  # torch 2.13.0 declares numpy>=2.0.2; it runs on numpy 1.26 (checked below). pip picks the machine's
  # local CPU wheel for this exact pin; never let pip choose a torch.
  torch==2.13.0 filelock==4.3.1 typing_extensions==4.16.0 sympy==1.14.0 mpmath==1.3.0 networkx==3.6.1
  jinja2==3.1.6 MarkupSafe==3.0.4 fsspec==2026.9.0
  numpy==1.26.4
  pandas==2.3.3 python-dateutil==2.9.0.post0 pytz==2025.2 tzdata==2025.2 six==1.17.0
  scipy==1.15.3
  scikit-learn==1.7.2 joblib==1.5.2 threadpoolctl==3.6.0
  pyyaml==6.0.2 tqdm==4.67.1 colorlog==4.7.2 colorama==0.4.4 texttable==1.7.0
  # RecBole's Trainer opens a torch.utils.tensorboard SummaryWriter: tensorboard, absl-py, protobuf, packaging.
  tensorboard==2.20.0 absl-py==2.3.1 protobuf==5.29.5 packaging==25.0
)
# The stamp records the pins (and the Python); the same pins = nothing to do.
want=$(printf '%s\n' "$PY" "${PINS[@]}" | sha256sum | cut -c1-16)

fail() { echo "peer_recbole.sh: $*" >&2; exit 1; }

setup() {
  if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "peer_recbole.sh: $VENV is up to date (delete $STAMP to force a reinstall)"
    return 0
  fi
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
    || fail "Python 3.11 is required; found $("$PY" --version 2>&1). Set PYTHON=python3.11."
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" || fail "could not create $VENV"
  echo "peer_recbole.sh: installing RecBole 1.2.1 and its pinned run-time dependencies into $VENV"
  "$VENV/bin/python" -m pip --disable-pip-version-check -q install --no-deps "${PINS[@]}" \
    2> >(grep -v "^WARNING: Location .* is ignored" >&2) || fail "pip install --no-deps failed (see above)"
  "$VENV/bin/python" - <<'PY' || fail "the peer environment does not work (see the line above)"
import sys, warnings
warnings.filterwarnings("ignore")
try:
    import numpy, pandas, torch, recbole
    from recbole.config import Config  # noqa: F401  (sets np.float etc.: fails on numpy 2)
    from recbole.model.context_aware_recommender import DeepFM  # noqa: F401
    from recbole.model.sequential_recommender import DIN  # noqa: F401
    from recbole.trainer import Trainer  # noqa: F401
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    assert numpy.__version__.startswith("1.") and pandas.__version__.startswith("2."), "numpy<2 and pandas<3"
    assert torch.from_numpy(numpy.arange(3)).sum().item() == 3 and torch.ones(2).numpy().sum() == 2.0
    assert torch.version.cuda is None, f"torch {torch.__version__} is a CUDA build; expected the CPU wheel"
except Exception as e:
    sys.exit(f"check failed: {type(e).__name__}: {e}")
print(f"peer_recbole.sh: ok: recbole {recbole.__version__}, torch {torch.__version__}, numpy {numpy.__version__}, "
      f"pandas {pandas.__version__}")
PY
  echo "$want" > "$STAMP"
}

run() {
  local out=""
  local args=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --out) out=$2; shift 2 ;;
      --out=*) out=${1#--out=}; shift ;;
      *) args+=("$1"); shift ;;
    esac
  done
  [ -n "$out" ] || fail "run: --out DIR is required"
  [ -x .venv/bin/python ] || fail "run: .venv is missing (bash scripts/setup.sh builds it); the export runs there"
  setup
  local data="$out/data/movielens-100k"
  # The exact split our suite movielens-100k-global-temporal trains on, with RecBole's DIN history
  # (item_id_list, any label, <= 50 earlier rows) built by benchmark.data.history.build_history_recbole.
  PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} .venv/bin/python -m benchmark data export movielens-100k \
    --split global_temporal --format recbole --history-len 50 --out "$data" || fail "export failed"
  PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} .venv/bin/python -m benchmark data describe movielens-100k \
    --split global_temporal --json > "$out/data/describe.json" || fail "describe failed"
  TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 "$VENV/bin/python" scripts/peer_recbole.py \
    --data "$out/data" --dataset movielens-100k --out "$out/peer_recbole.json" ${args[@]+"${args[@]}"}
}

case "${1:-setup}" in
  setup) setup ;;
  run) shift; run "$@" ;;
  *) fail "usage: bash scripts/peer_recbole.sh [setup | run --out DIR [peer_recbole.py options]]" ;;
esac
