#!/usr/bin/env bash
# The GPU paths in one short run (about 9 minutes at most): the gpu-marked tests, the loss pass and
# kNN benchmarks on the GPU, one automatic loop iteration of the demo, and the diagnosis tests with
# the GPU visible.
#
#   benchmarks/gpu_check.sh OUTDIR          (PYTHON=python3 by default; needs the project importable)
#   ONLY="env gpu-tests" benchmarks/gpu_check.sh OUTDIR     runs only the named steps
#
# Each step has its own time limit and log (OUTDIR/<step>.log); a summary line per step is printed.
# The model is whatever "smollm2-135m" resolves to (MIDDO_CACHE_DIR); data from MIDDO_SHARED_DIR.
set -u
OUT_DIR=${1:-gpu-check}
PY=${PYTHON:-python3}
SHARED=${MIDDO_SHARED_DIR:-../shared}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

step() {
  local name=$1 limit=$2
  shift 2
  [[ -z "${ONLY:-}" || " $ONLY " == *" $name "* ]] || return 0
  local started=$SECONDS
  timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
  local rc=$?
  echo "=== $name: rc=$rc in $((SECONDS - started)) s"
  tail -n "${TAIL:-14}" "$OUT_DIR/$name.log"
}

step env 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; \
  $PY -c 'import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name())'"
step gpu-tests 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/train/test_gpu.py tests/knn \
  tests/signals/test_quality_backends.py
step bench-loss 75 "$PY" -m benchmarks.bench_loss --device cuda --n 999 --batch-tokens 16384 \
  --data "$SHARED/data/alpaca_en_demo.json"
step bench-knn 100 "$PY" -m benchmarks.bench_knn --device cuda --n 100000 --big 1000000
WS=$(mktemp -d)/demo
step demo-loop 180 bash -c "$PY -m middo_core.cli demo $WS && \
  time $PY -m middo_core.cli loop $WS --iterations 1 --review auto && \
  $PY -m middo_core.cli status $WS && $PY -m middo_core.cli tables $WS"
step diagnose-tests 60 "$PY" -m pytest -q -p no:cacheprovider -x tests/test_diagnose.py tests/knn \
  -m "not network"
