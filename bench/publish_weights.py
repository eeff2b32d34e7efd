"""Weight publication time for SmolLM2 vs one ray.put + ray.get of the same state dict, in one run.

    .venv/bin/python bench/publish_weights.py [--receivers 1 2 4] [--repeats 3]

Full weights (all 272 tensors, fp32) and a LoRA adapter (r=16, all projections) are published to
1, 2 and 4 model actors that each serve SmolLM2: one put into the object store, one load call per
receiver, every acknowledgement awaited. The baseline is a put and a get of the same dict in this
process, twice: as torch tensors (what a plain ray.put of a state dict does: pickled, copied) and
as numpy arrays (the wire format publication uses, read without a copy). Ratios = publication /
baseline; the receivers also copy the tensors into their models, which the baselines do not.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray

from academe.agents import ModelSpec
from academe.simulation.actors import ModelPool, to_wire
from academe.simulation.config import TrainSettings
from academe.trainers.publish import publish
from academe.trainers.trainer import Trainer


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--receivers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ray.init(num_cpus=max(args.receivers) + 1, include_dashboard=False, log_to_driver=False)
    trainer = Trainer(ModelSpec(path="smollm2"), TrainSettings(mode="lora", lora_r=16), threads=2)
    payloads = {"full": trainer.weights("full"), "adapter": trainer.weights("adapter")}
    lora = trainer.lora_settings()
    print(f"{'what':<8} {'tensors':>7} {'MB':>7} {'receivers':>9} {'publish s':>10} {'put+get torch':>14} "
          f"{'ratio':>6} {'put+get numpy':>14} {'ratio':>6}")
    for what, weights in payloads.items():
        mb = sum(t.numel() * t.element_size() for t in weights.values()) / 2**20
        baseline = median_time(lambda: ray.get(ray.put(weights)), args.repeats)
        as_numpy = to_wire(weights)
        numpy_baseline = median_time(lambda: ray.get(ray.put(as_numpy)), args.repeats)
        for n in args.receivers:
            pool = ModelPool({f"r{i}": ModelSpec(path="smollm2", num_cpus=1, threads=1) for i in range(n)})
            version = iter(range(1, 1000))
            send = lambda: publish(pool.servers, weights, next(version), what, lora, timeout_s=300)
            report = send()  # warm-up (the first adapter also wraps each model with peft)
            assert report.ok, report.failed
            took = median_time(lambda: send(), args.repeats)
            print(f"{what:<8} {len(weights):>7} {mb:>7.1f} {n:>9} {took:>10.3f} {baseline:>14.3f} "
                  f"{took / baseline:>6.2f} {numpy_baseline:>14.3f} {took / numpy_baseline:>6.2f}")
            pool.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
