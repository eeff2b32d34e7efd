"""Trainer throughput (tokens/s) for LoRA and full SFT vs a plain PyTorch loop, same batches, one run.

    .venv/bin/python bench/trainer_throughput.py [--steps 8]

Examples are real: GSM8K questions with their worked answers as targets (read by path from
../shared/data). The trainer runs as a Ray actor with 2 torch threads; the plain loop runs in a
fresh process of its own with 2 threads, on the same batches in the same order, with HF's built-in
loss (labels, prompt tokens masked), AdamW, gradient clipping and the same gradient checkpointing.
The two never run at the same time. Each does the phase twice in its process: the first in a fresh
process (every buffer is memory touched for the first time), the second as a trainer that lives
through many phases runs them. Comparing a fresh process with a warm one measures the process, not
the trainer: an earlier version of this bench did so and printed 0.76-0.81 for full fine-tuning.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray
import torch

from academe.agents import ModelSpec
from academe.protocols import user
from academe.simulation.config import TrainSettings
from academe.trainers.data import SFTExample
from academe.trainers.losses import collate, encode
from academe.trainers.trainer import LORA_TARGETS, Trainer

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test_socratic.dev.jsonl"


def examples(n: int) -> list[SFTExample]:
    import json

    rows = [json.loads(line) for line in open(GSM8K)][:n]
    return [SFTExample(messages=(user(r["question"]),), target=r["answer"], episode=i, step=1, model_version=0)
            for i, r in enumerate(rows)]


def same_batches(items: list, settings: TrainSettings, steps: int, phase: int) -> list[list]:
    """The batches the trainer draws in its ``phase``-th phase (its shuffling, seeded as it seeds it)."""
    rng, order, batches = random.Random(f"{settings.seed}/{phase}"), [], []
    for _ in range(steps):
        batch = []
        while len(batch) < settings.batch_size:
            if not order:
                order = list(items)
                rng.shuffle(order)
            batch.append(order.pop())
        batches.append(batch)
    return batches


def plain_loop(settings: TrainSettings, data: list[SFTExample], steps: int, phase: int) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from academe.agents.models import local_folder

    torch.set_num_threads(2)
    torch.manual_seed(settings.seed)
    folder = local_folder("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if settings.gradient_checkpointing:  # the same memory setting as the trainer
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if settings.mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha,
                                                 target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr)
    encoded = [encode(tokenizer, e.messages, e.target, settings.max_seq_len) for e in data]
    model.train()
    tokens, start = 0, time.perf_counter()
    for batch in same_batches(encoded, settings, steps, phase):
        tensors = collate(batch, tokenizer.pad_token_id, "cpu")
        loss = model(**tensors).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        tokens += int(tensors["attention_mask"].sum())
    return tokens / (time.perf_counter() - start)


SETTINGS = {"lora": dict(mode="lora", lr=5e-4), "full": dict(mode="full", lr=5e-5)}


def settings_for(mode: str, steps: int) -> TrainSettings:
    return TrainSettings(**SETTINGS[mode], batch_size=8, steps=steps, max_seq_len=384)


def plain_in_fresh_process(mode: str, steps: int) -> list[float]:
    """The plain loop twice, in a process of its own: tokens/s of the first and second run."""
    done = subprocess.run([sys.executable, __file__, "--plain", mode, "--steps", str(steps)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--plain", choices=list(SETTINGS), help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    data = examples(64)
    if args.plain:
        settings = settings_for(args.plain, args.steps)
        print(json.dumps([plain_loop(settings, data, args.steps, phase) for phase in range(2)]))
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"SmolLM2 SFT, batch 8, {args.steps} steps a phase, GSM8K question -> worked answer")
    print(f"{'mode':<5} {'phase':<6} {'trainer tok/s':>14} {'plain loop tok/s':>17} {'ratio':>6}")
    for mode in SETTINGS:
        actor = ray.remote(Trainer).options(num_cpus=2).remote(ModelSpec(path="smollm2"), settings_for(mode, args.steps), 2)
        trainer = [ray.get(actor.train_sft.remote(data)).tokens_per_s for _ in range(2)]
        ray.kill(actor)
        plain = plain_in_fresh_process(mode, args.steps)
        for phase, mine, theirs in zip(("first", "second"), trainer, plain):
            print(f"{mode:<5} {phase:<6} {mine:>14.1f} {theirs:>17.1f} {mine / theirs:>6.2f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
