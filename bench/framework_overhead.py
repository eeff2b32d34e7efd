"""Framework overhead with scripted agents: messages/s through runner, actors and log, and memory.

    .venv/bin/python bench/framework_overhead.py [--sizes 100 1000 10000]

Every episode is in flight at once (concurrency = episodes). Both agents are scripted (a Socratic
teacher walking reference steps, a student right one time in three), each in its own Ray actor, so
the figures are the cost of the framework itself: batching, Ray calls, protocol steps and the
durable log. Beside each, the same episodes in a plain in-process loop (the protocol's steps and
the agents' functions, nothing else), and the ratio of the two. Peak memory is the driver's
resident-set growth over the run, per in-flight episode.
"""

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import psutil
import ray

from academe.agents import AgentSpec, ModelSpec, Reply
from academe.protocols import socratic
from academe.protocols.engine import Answer, Next
from academe.protocols.oracles import guessing_student, socratic_teacher
from academe.protocols.socratic import TutoringOptions
from academe.protocols.tasks import generate_word_problems
from academe.simulation.actors import ModelPool
from academe.simulation.log import DialogueLog
from academe.simulation.runner import Batch, Runner, derive_seed

MODELS = {"student": ModelSpec(kind="scripted", path="academe.protocols.oracles:guessing_student",
                               num_cpus=0, max_batch_size=4096),
          "teacher": ModelSpec(kind="scripted", path="academe.protocols.oracles:socratic_teacher",
                               num_cpus=0, max_batch_size=4096)}
AGENTS = {"teacher": AgentSpec(name="teacher", role="teacher", model="teacher"),
          "student": AgentSpec(name="student", role="student", model="student")}


class PeakRSS:
    """Samples this process's resident memory in the background; keeps the maximum."""

    def __init__(self):
        self.process, self.peak, self.running = psutil.Process(), 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self):
        self.base = self.process.memory_info().rss
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def plain_loop(tasks, options) -> tuple[int, float]:
    """The same episodes, agents and seeds in a plain in-process loop: no runner, no Ray, no log.
    What the protocol and the agents themselves cost; the runner's figure is read against it."""
    fns = {"student": guessing_student, "teacher": socratic_teacher}
    messages, start = 0, time.perf_counter()
    for episode, task in enumerate(tasks):
        step, n = socratic.begin(task, options), 0
        while isinstance(step, Next):
            n += 1
            role = socratic.speakers(step.phase)[0]
            answers = []
            for i, ask in enumerate(step.asks):
                prompt = AGENTS[role].prompt(ask.messages, seed=derive_seed(0, episode, n, i), task=task)
                text = fns[role](prompt)
                answers.append(Answer(role=role, seat=0, agent=role, reply=Reply(
                    text=text, prompt_tokens=0, completion_tokens=len(text.split()), finish_reason="stop",
                    model=role, model_version=0, latency_s=0.0)))
                messages += 1
            step = socratic.step(step.phase, step.state, answers)
    return messages, time.perf_counter() - start


def one(size: int, pool: ModelPool) -> None:
    tasks = generate_word_problems(size, steps=2, seed=size)
    with tempfile.TemporaryDirectory() as out:
        runner = Runner(pool, DialogueLog(Path(out)), run_id="bench", concurrency=size,
                        max_batch={"student": 4096, "teacher": 4096})
        batch = Batch(socratic, TutoringOptions(max_student_turns=4), {a.role: (a,) for a in AGENTS.values()},
                      dict(enumerate(tasks)))
        with PeakRSS() as memory:
            start = time.perf_counter()
            runner.run(batch)
            wall = time.perf_counter() - start
        log_mb = sum(p.stat().st_size for p in (Path(out) / "log").iterdir()) / 2**20
    messages = runner.progress.messages
    per_episode_kb = (memory.peak - memory.base) / size / 1024
    plain_messages, plain_wall = plain_loop(tasks, TutoringOptions(max_student_turns=4))
    plain_rate, rate = plain_messages / plain_wall, messages / wall
    print(f"{size:>9} {messages:>9} {wall:>8.2f} {rate:>11.0f} {plain_rate:>11.0f} {rate / plain_rate:>6.3f} "
          f"{per_episode_kb:>14.1f} {log_mb:>8.2f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    pool = ModelPool(MODELS)
    print(f"{'episodes':>9} {'messages':>9} {'wall s':>8} {'messages/s':>11} {'plain loop':>11} {'ratio':>6} "
          f"{'peak KB/episode':>14} {'log MB':>8}")
    for size in args.sizes:
        one(size, pool)
    pool.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
