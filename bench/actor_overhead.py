"""Generation throughput through a model actor vs the same backend called directly, in one run.

    .venv/bin/python bench/actor_overhead.py [--model smollm2] [--repeats 3]

Prints new tokens/s at batch 1 and 16 for both paths and their ratio (actor / direct); the ratio is
the actor's overhead. Both paths use 2 torch threads and run one after the other, never together.
"""

import argparse
import asyncio
import os
import statistics
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray
import torch

from academe.agents import ChatMessage, ModelSpec, Prompt, Sampling
from academe.simulation.actors import ModelPool, ModelServer

QUESTIONS = ["Explain why the sky is blue.", "Write a short story about a lost key.",
             "Describe how a bicycle works.", "What makes a good teacher?"]


def batch_of(n: int, new_tokens: int) -> list[Prompt]:
    return [Prompt(messages=(ChatMessage(role="user", content=QUESTIONS[i % 4] + f" (#{i})"),),
                   sampling=Sampling(max_new_tokens=new_tokens)) for i in range(n)]


def tokens_per_s(call, prompts) -> float:
    start = time.perf_counter()
    replies = call(prompts)
    return sum(r.completion_tokens for r in replies) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    spec = ModelSpec(path=args.model, num_cpus=2)
    torch.set_num_threads(2)
    direct = ModelServer(spec)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    pool = ModelPool({"m": spec})
    via_actor = lambda prompts: asyncio.run(pool.generate("m", prompts))
    print(f"model {direct.backend.model_name}, {args.new_tokens} new tokens, greedy, fp32, median of {args.repeats}")
    print(f"{'batch':>5} {'direct tok/s':>13} {'actor tok/s':>12} {'actor/direct':>13}")
    for size in (1, 16):
        prompts = batch_of(size, args.new_tokens)
        direct.generate(prompts), via_actor(prompts)  # warm-up
        d, a = [], []
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            d.append(tokens_per_s(direct.generate, prompts))
            a.append(tokens_per_s(via_actor, prompts))
        d, a = statistics.median(d), statistics.median(a)
        print(f"{size:>5} {d:>13.1f} {a:>12.1f} {a / d:>13.3f}")
    pool.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
