"""Runner throughput vs the raw backend: same model, same batches, same run.

    .venv/bin/python bench/runner_throughput.py [--concurrency 16]

A Socratic simulation of C concurrent episodes (LLM student, scripted teacher) runs through the
runner, actors and log; then every batch the student model received is sent again, as the same
batch, straight to the same backend in this process. Student tokens/s of the simulation (wall time
of the whole run: both agents' turns, Ray, logging, protocol steps) over tokens/s of the raw
batched generate calls is the runner's efficiency; "not model" is the share of the run's wall time
spent outside the student model's calls (the teacher's turns, protocol steps, the log, Ray): the
per-round cost a faster model would leave. The ratio also holds the difference between generating
in the actor's process and in this one, which varies from run to run by more than that share. Done for a tiny random model and SmolLM2. Both
paths are warmed up first: the raw one by a batch, the runner by a one-episode run.
"""

import argparse
import asyncio
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray
import torch

from academe.agents import AgentSpec, ModelSpec, Prompt, Sampling
from academe.agents.models import build_tiny_model
from academe.protocols import socratic, user
from academe.protocols.socratic import TutoringOptions
from academe.protocols.tasks import generate_word_problems
from academe.simulation.actors import ModelPool, ModelServer
from academe.simulation.log import DialogueLog, read_steps
from academe.simulation.runner import Batch, Runner


def simulate(model_path: str, concurrency: int, new_tokens: int, turns: int, out: Path):
    models = {"student": ModelSpec(path=model_path, num_cpus=2, max_batch_size=concurrency),
              "teacher": ModelSpec(kind="scripted", path="academe.protocols.oracles:socratic_teacher", num_cpus=0)}
    agents = {"teacher": AgentSpec(name="teacher", role="teacher", model="teacher"),
              "student": AgentSpec(name="student", role="student", model="student",
                                   sampling=Sampling(max_new_tokens=new_tokens))}
    pool = ModelPool(models)
    warm_up = agents["student"].prompt([user("Hello")], seed=0)
    asyncio.run(pool.generate("student", [warm_up] * concurrency))  # the raw path is warmed up too
    tasks = generate_word_problems(concurrency, steps=2, seed=1)
    cast = {a.role: (a,) for a in agents.values()}
    options = TutoringOptions(max_student_turns=turns)
    # so is the runner: one short episode first (its first log compaction imports what pyarrow needs)
    Runner(pool, DialogueLog(out / "warm-up"), run_id="warm-up").run(Batch(socratic, options, cast, {0: tasks[0]}))
    runner = Runner(pool, DialogueLog(out / "run"), run_id="bench", concurrency=concurrency,
                    max_batch={"student": concurrency})
    batch = Batch(socratic, options, cast, dict(enumerate(tasks)))
    start = time.perf_counter()
    runner.run(batch)
    wall = time.perf_counter() - start
    pool.shutdown()
    return wall


def student_batches(run_dir: Path) -> tuple[list[list[Prompt]], float]:
    """The batches the student model got, in order, and the seconds the runner waited on them."""
    batches, spans = defaultdict(list), {}
    for record in read_steps(run_dir):
        for turn in record.turns:
            if turn.role == "student":
                batches[turn.started].append(turn.prompt)
                spans[turn.started] = turn.ended - turn.started
    return [batches[k] for k in sorted(batches)], sum(spans.values())


def compare(label: str, model_path: str, args) -> None:
    with tempfile.TemporaryDirectory() as out:
        wall = simulate(model_path, args.concurrency, args.new_tokens, args.turns, Path(out))
        batches, in_model = student_batches(Path(out) / "run")
    torch.set_num_threads(2)
    raw = ModelServer(ModelSpec(path=model_path, num_cpus=2))
    raw.generate(batches[0])  # warm-up
    tokens, raw_time = 0, 0.0
    for batch in batches:
        start = time.perf_counter()
        tokens += sum(r.completion_tokens for r in raw.generate(batch))
        raw_time += time.perf_counter() - start
    sizes = [len(b) for b in batches]
    print(f"{label:<10} {args.concurrency:>5} {len(batches):>8} {sum(sizes) / len(sizes):>10.1f} "
          f"{tokens / wall:>14.1f} {tokens / raw_time:>12.1f} {raw_time / wall:>8.3f} {1 - in_model / wall:>10.3f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--skip-smollm2", action="store_true")
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"Socratic simulation, scripted teacher, student greedy, {args.new_tokens} new tokens, "
          f"{args.turns} student turns per episode")
    print(f"{'model':<10} {'C':>5} {'batches':>8} {'mean size':>10} {'runner tok/s':>14} {'raw tok/s':>12} {'ratio':>8} {'not model':>10}")
    with tempfile.TemporaryDirectory() as tiny_dir:
        compare("tiny", str(build_tiny_model(Path(tiny_dir) / "tiny")), args)
    if not args.skip_smollm2:
        compare("smollm2", "smollm2", args)
    ray.shutdown()


if __name__ == "__main__":
    main()
