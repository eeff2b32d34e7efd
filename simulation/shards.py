"""Sharded runners: a run's episodes split across R runner actors, so the driver is not the ceiling.

Each shard is a ``Runner`` in a Ray actor of its own, stepping a contiguous block of the episodes:
it batches its episodes' turns to the run's model actors (shared by every shard) and writes its
own log segments (``DialogueLog(shard=k)``); the log reads as one. An episode's prompts and seeds
depend only on the run seed and its position, never on which shard stepped it, so a greedy run
gives the same transcripts with any number of shards. The driver only starts the shards, shows
their summed progress and gathers their outcomes.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from academe.protocols.engine import Outcome
from academe.simulation.actors import ModelPool
from academe.simulation.log import DialogueLog
from academe.simulation.runner import Batch, Episode, Progress, Runner

PROGRESS_FIELDS = ("done", "solved", "errors", "messages", "completion_tokens")


class Shard:
    """One runner shard (a threaded Ray actor: ``progress`` answers while ``run`` runs)."""

    def __init__(self, shard: int, specs: dict, servers: dict, run_dir: str, run_id: str, seed: int,
                 concurrency: int, max_batch: dict[str, int]):
        self.runner = Runner(ModelPool.attached(specs, servers), DialogueLog(run_dir, shard=shard), run_id=run_id,
                             seed=seed, concurrency=concurrency, max_batch=max_batch)

    def run(self, batch: Batch, restored: dict[int, Episode], finished: dict[int, Outcome]) -> dict[int, Outcome]:
        return self.runner.run(batch, restored=restored, finished=finished)

    def progress(self) -> dict[str, int]:
        return {name: getattr(self.runner.progress, name) for name in PROGRESS_FIELDS}


def blocks(episodes: list[int], shards: int) -> list[list[int]]:
    """``episodes`` in ``shards`` contiguous blocks of near-equal size."""
    n = len(episodes)
    return [episodes[k * n // shards:(k + 1) * n // shards] for k in range(shards)]


def run_sharded(batch: Batch, shards: int, pool: ModelPool, run_dir: Path, run_id: str, seed: int, concurrency: int,
                max_batch: dict[str, int], restored: dict[int, Episode], finished: dict[int, Outcome],
                on_progress: Callable[[Progress], None] | None = None) -> tuple[dict[int, Outcome], Progress]:
    """Run ``batch`` on ``shards`` runner actors on this node (they write into this run folder);
    each gets ``concurrency / shards`` episodes in flight. Returns the outcomes and the progress."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(Shard).options(num_cpus=0, max_concurrency=2, scheduling_strategy=here)
    parts = [part for part in blocks(sorted(batch.tasks), shards) if part]
    per_shard = max(1, concurrency // shards)
    runners, calls = [], []
    for k, part in enumerate(parts):
        mine = set(part)
        runner = actor.remote(k, pool.specs, pool.servers, str(run_dir), run_id, seed, per_shard, max_batch)
        runners.append(runner)
        calls.append(runner.run.remote(replace(batch, tasks={i: batch.tasks[i] for i in part}),
                                       {i: e for i, e in restored.items() if i in mine},
                                       {i: o for i, o in finished.items() if i in mine}))
    progress = Progress(total=len(batch.tasks))
    try:
        pending = list(calls)
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            counts = ray.get([r.progress.remote() for r in runners])
            for name in PROGRESS_FIELDS:
                setattr(progress, name, sum(c[name] for c in counts))
            if on_progress is not None:
                on_progress(progress)
        outcomes: dict[int, Outcome] = {}
        for part in ray.get(calls):  # a shard that failed raises here, with its cause
            outcomes.update(part)
        return outcomes, progress
    finally:
        for runner in runners:
            ray.kill(runner)
