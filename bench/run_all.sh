#!/usr/bin/env bash
# All benchmarks, one after the other (each prints its own side-by-side table). ~20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
echo "== model actor vs direct backend (SmolLM2)"; $py bench/actor_overhead.py
echo "== runner vs raw backend"; $py bench/runner_throughput.py
echo "== framework overhead, scripted agents"; $py bench/framework_overhead.py
echo "== weight publication"; $py bench/publish_weights.py
echo "== trainer vs plain loop"; $py bench/trainer_throughput.py
