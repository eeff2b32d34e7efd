"""Tutoring dialogues on vLLM: academe's in-process vLLM backend against `vllm serve` driven by a
plain AsyncOpenAI client, and against academe's transformers backend, in one run.

    bash scripts/setup.sh vllm
    .venv-vllm/bin/python bench/vllm_dialogue.py [--dialogues 32] [--rounds 3] [--skip-transformers]

The workload: D teacher/student dialogues of R rounds (a teacher question, then a student answer:
2*D*R messages), at most 48 new tokens, temperature 0, both agents SmolLM2-135M-Instruct.

- academe: a two-phase protocol run by the runner, with both agents on one model of kind
  ``vllm`` (the engine in a Ray actor, the durable log on), and with kind ``transformers``.
- plain: ``vllm serve`` on loopback; every dialogue a coroutine that awaits the teacher's then the
  student's completion, all dialogues at once: the way one would write it by hand.

Printed: completion tokens/s of each, the ratio academe/plain, and academe's framework CPU per
message: the driver's CPU time (runner, protocol steps, log, Ray calls), and apart from it the model
actor's CPU outside the engine (chat templates and tokenizing, which `vllm serve` does in its own
server process, uncounted on the plain side; the engine's process is not counted on either side).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")

from academe.agents.records import ChatMessage, Reply
from academe.protocols import Done, EpisodeState, Options, Phase, Protocol, ask, system, user
from academe.protocols.tasks import generate_word_problems

TEACHER = "You are a patient math tutor. Ask the student one short guiding question."
STUDENT = "You are a student solving a math word problem. Answer the tutor briefly."
NEW_TOKENS = 48


class Rounds(Options):
    rounds: int = 3


class Dialogue(EpisodeState):
    rounds: int
    lines: tuple[str, ...] = ()


def teacher_messages(question: str, lines) -> tuple[ChatMessage, ...]:
    return (system(TEACHER), user(f"Problem: {question}\nDialogue so far:\n" + "\n".join(lines) + "\nYour question:"))


def student_messages(question: str, lines) -> tuple[ChatMessage, ...]:
    return (system(STUDENT), user(f"Problem: {question}\nDialogue so far:\n" + "\n".join(lines) + "\nYour answer:"))


def start(task, options: Rounds):
    state = Dialogue(task=task, rounds=options.rounds)
    return ask("teach", state, *teacher_messages(task.question, state.lines))


def taught(s: Dialogue, answers):
    lines = s.lines + (f"Tutor: {answers[0].text}",)
    state = s.replace(lines=lines)
    return ask("answer", state, *student_messages(s.task.question, lines))


def answered(s: Dialogue, answers):
    lines = s.lines + (f"Student: {answers[0].text}",)
    state = s.replace(lines=lines)
    if len(lines) >= 2 * s.rounds:
        return Done(state=state, outcome={})
    return ask("teach", state, *teacher_messages(s.task.question, lines))


tutoring = Protocol(name="bench-tutoring", roles=("teacher", "student"), state=Dialogue, start=start, first=("teach",),
                    options=Rounds, phases={"teach": Phase("teacher", taught, then=("answer",)),
                            "answer": Phase("student", answered, then=("teach", "<end>"))})


def run_academe(kind: str, questions, rounds: int, out: Path) -> dict:
    """The dialogues through academe's runner; tokens/s and the framework's CPU per message."""
    import psutil

    from academe.agents import AgentSpec, ModelSpec, Sampling
    from academe.agents.records import Task
    from academe.simulation.actors import ModelPool
    from academe.simulation.log import DialogueLog, read_messages
    from academe.simulation.runner import Batch, Runner

    import torch

    gpus = 1 if torch.cuda.is_available() else 0  # on a GPU machine both paths use one GPU
    options = {"max_model_len": 2048} if kind == "vllm" else {}
    spec = ModelSpec(kind=kind, path="smollm2", dtype="bfloat16" if kind == "vllm" else "float32", num_cpus=2,
                     num_gpus=gpus, max_batch_size=len(questions) * 2, options=options)
    pool = ModelPool({"smollm2": spec})
    sampling = Sampling(max_new_tokens=NEW_TOKENS)
    cast = {"teacher": (AgentSpec(name="teacher", role="teacher", model="smollm2", sampling=sampling),),
            "student": (AgentSpec(name="student", role="student", model="smollm2", sampling=sampling),)}
    tasks = {i: Task(id=f"q{i}", question=q, answer="0") for i, q in enumerate(questions)}
    options = Rounds(rounds=rounds)
    # warm-up: one short dialogue (engine kernels, the log's first compaction)
    Runner(pool, DialogueLog(out / f"{kind}-warm"), run_id="warm").run(Batch(tutoring, options, cast, {0: tasks[0]}))
    actor = psutil.Process(pool.call("smollm2", "info")["pid"])  # the model's actor (an engine runs in a child)
    runner = Runner(pool, DialogueLog(out / kind), run_id=kind, concurrency=len(tasks),
                    max_batch={"smollm2": len(tasks) * 2})
    cpu0, actor0, wall0 = time.process_time(), sum(actor.cpu_times()[:2]), time.perf_counter()
    runner.run(Batch(tutoring, options, cast, tasks))
    wall, driver_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    actor_cpu = sum(actor.cpu_times()[:2]) - actor0
    frame = read_messages(out / kind).to_pandas()
    pool.shutdown()
    return {"wall_s": wall, "messages": len(frame), "tokens": int(frame.completion_tokens.sum()),
            "driver_cpu_s": driver_cpu, "actor_cpu_s": actor_cpu,
            "replies": frame.sort_values(["episode", "step"]).reply.tolist()}


async def plain_dialogues(base_url: str, questions, rounds: int) -> dict:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)

    async def complete(messages) -> tuple[str, int]:
        r = await client.chat.completions.create(model="smollm2", messages=[m.model_dump() for m in messages],
                                                 max_tokens=NEW_TOKENS, temperature=0.0)
        return r.choices[0].message.content.strip(), r.usage.completion_tokens

    async def dialogue(question: str):
        lines, tokens, replies = [], 0, []
        for _ in range(rounds):
            text, n = await complete(teacher_messages(question, lines))
            lines.append(f"Tutor: {text}"); tokens += n; replies.append(text)
            text, n = await complete(student_messages(question, lines))
            lines.append(f"Student: {text}"); tokens += n; replies.append(text)
        return tokens, replies

    await dialogue(questions[0])  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(dialogue(q) for q in questions))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"wall_s": wall, "messages": 2 * rounds * len(questions), "tokens": sum(t for t, _ in results),
            "client_cpu_s": cpu, "replies": [r for _, rs in results for r in rs]}


def serve(folder: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, VLLM_CPU_OMP_THREADS_BIND="0-1")
    server = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", folder,
                               "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port),
                               "--dtype", "bfloat16", "--enforce-eager", "--max-model-len", "2048",
                               "--disable-log-stats"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    import urllib.request

    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return server, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if server.poll() is not None:
                raise RuntimeError("vllm serve exited")
            time.sleep(1)
    raise RuntimeError("vllm serve did not come up in 300 s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dialogues", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args()
    import ray

    from academe.agents.models import local_folder

    questions = [t.question for t in generate_word_problems(args.dialogues, steps=2, seed=3)]
    folder = str(local_folder("smollm2"))
    out = Path(tempfile.mkdtemp(prefix="academe-bench-"))

    server, url = serve(folder)
    try:
        plain = asyncio.run(plain_dialogues(url, questions, args.rounds))
    finally:
        server.terminate()
        server.wait(30)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    results = {"vllm serve + AsyncOpenAI": plain, "academe vllm": run_academe("vllm", questions, args.rounds, out)}
    if not args.skip_transformers:
        results["academe transformers"] = run_academe("transformers", questions, args.rounds, out)
    ray.shutdown()

    print(f"\n{args.dialogues} dialogues x {args.rounds} rounds, {NEW_TOKENS} new tokens max, greedy, SmolLM2 bf16")
    print(f"{'path':<28}{'messages':>9}{'tokens':>8}{'wall s':>9}{'tok/s':>9}{'driver/client CPU ms/msg':>26}"
          f"{'model actor CPU ms/msg':>24}")
    for name, r in results.items():
        cpu = r.get("driver_cpu_s", r.get("client_cpu_s"))
        actor = f"{1000 * r['actor_cpu_s'] / r['messages']:.2f}" if "actor_cpu_s" in r else "-"
        print(f"{name:<28}{r['messages']:>9}{r['tokens']:>8}{r['wall_s']:>9.1f}{r['tokens'] / r['wall_s']:>9.1f}"
              f"{1000 * cpu / r['messages']:>26.2f}{actor:>24}")
    base = plain["tokens"] / plain["wall_s"]
    for name in ("academe vllm", "academe transformers"):
        if name in results:
            r = results[name]
            print(f"{name} / vllm serve + client: {r['tokens'] / r['wall_s'] / base:.2f}x tokens/s")
    same = sum(a == b for a, b in zip(results["academe vllm"]["replies"], plain["replies"]))
    print(f"replies identical between academe vllm and vllm serve: {same}/{plain['messages']}")


if __name__ == "__main__":
    main()
