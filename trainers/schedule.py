"""Scheduled training inside a running simulation: every K finished episodes, build the data from
the log through the protocol's declaration, train a phase in the trainer actor, checkpoint it,
publish the new version to the model's actor, and (if asked) measure held-out accuracy.

``wait: true`` pauses the simulation for the phase (every later turn is on-policy);
``wait: false`` trains in the background while episodes go on, using only turns at most
``max_staleness`` versions old.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from academe.agents.agent import AgentSpec
from academe.agents.backends.base import ModelSpec
from academe.protocols.engine import Options, Protocol
from academe.agents.records import Task
from academe.simulation.config import TrainingSection
from academe.simulation.log import read_steps
from academe.simulation.runner import Runner
from academe.trainers.data import LogFilter, build
from academe.trainers.evaluate import accuracy
from academe.trainers.publish import publish_local
from academe.trainers.trainer import Trainer, TrainingFailed, latest_checkpoint

PHASES_FILE = "training.jsonl"


class Evaluation:
    """Held-out accuracy of one agent, measured through the model actor it uses."""

    def __init__(self, agent: AgentSpec, protocol: Protocol, options: Options, tasks: list[Task]):
        self.agent, self.protocol, self.options, self.tasks = agent, protocol, options, tasks

    async def __call__(self, pool) -> dict:
        share, version = await accuracy(pool, self.agent, self.protocol, self.options, self.tasks)
        return {"accuracy": share, "version": version, "tasks": len(self.tasks)}


class ScheduledTraining:
    def __init__(self, model: str, section: TrainingSection, spec: ModelSpec, protocol: Protocol,
                 run_dir: Path, use_ray: bool, evaluation: Evaluation | None = None):
        self.model, self.section, self.protocol, self.run_dir = model, section, protocol, Path(run_dir)
        self.declaration = protocol.training_for(section.role, section.kind)
        self.checkpoints = self.run_dir / "checkpoints" / model
        self.evaluation, self.use_ray = evaluation, use_ray
        self.history_file = self.run_dir / PHASES_FILE
        self.history = [json.loads(line) for line in open(self.history_file)] if self.history_file.exists() else []
        self.spec = spec
        self.trainer = self._new_trainer()
        self.version = 0
        self.pauses = section.wait
        self.next_at = section.every_episodes
        self.training_s = 0.0
        self.phase_started = 0.0

    def _new_trainer(self):
        if not self.use_ray:
            return Trainer(self.spec, self.section.settings, self.section.threads)
        import ray

        actor = ray.remote(Trainer).options(num_cpus=self.section.num_cpus, num_gpus=self.section.num_gpus,
                                            max_concurrency=2)  # a second thread answers status()
        return actor.remote(self.spec, self.section.settings, self.section.threads)

    async def _replace_trainer(self) -> None:
        """After the trainer actor died (e.g. killed for using too much memory): a new one, at the
        last good checkpoint."""
        self.trainer = self._new_trainer()
        checkpoint = latest_checkpoint(self.checkpoints)
        if checkpoint is not None:
            await self._call("load", checkpoint)

    async def _call(self, method: str, *args):
        if self.use_ray:
            return await getattr(self.trainer, method).remote(*args)
        return await asyncio.to_thread(getattr(self.trainer, method), *args)

    async def start(self, pool, finished: int) -> None:
        """Before the run (or a resumed run) starts: restore the last checkpoint and publish it,
        or measure the untrained model."""
        every = self.section.every_episodes
        self.next_at = (finished // every + 1) * every
        checkpoint = latest_checkpoint(self.checkpoints)
        if checkpoint is not None:
            self.version = await self._call("load", checkpoint)
            await self._publish(pool)
        elif self.evaluation is not None and not self.history:
            self._record({"version": 0, "event": "baseline", **await self.evaluation(pool)})

    def due(self, finished: int) -> bool:
        return finished >= self.next_at

    async def run(self, runner: Runner) -> None:
        while self.next_at <= runner.progress.done:
            self.next_at += self.section.every_episodes
        started, self.phase_started = time.perf_counter(), time.time()
        try:
            await self._phase(runner)
        finally:
            self.training_s += time.perf_counter() - started

    async def _phase(self, runner: Runner) -> None:
        episodes = runner.progress.done  # the phase trains on what was logged by now
        records = await asyncio.to_thread(lambda: list(read_steps(self.run_dir)))
        staleness = self.section.max_staleness
        where = LogFilter(min_version=None if staleness is None else max(0, self.version - staleness))
        examples = build(records, self.declaration, where)
        if len(examples) < self.section.min_examples:
            self._record({"version": self.version, "event": "skipped", "episodes": episodes,
                          "reason": f"{len(examples)} example(s) from the log (need {self.section.min_examples}); "
                                    f"kept version {self.version}"})
            return
        method = "train_sft" if self.declaration.kind in ("sft", "distill") else "train_dpo"
        try:
            report = await self._with_status(runner, self._call(method, examples))
        except TrainingFailed as exc:
            self._record({"version": self.version, "event": "failed", "reason": str(exc)})
            return
        except Exception as exc:  # the trainer actor itself died
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            self._record({"version": self.version, "event": "failed",
                          "reason": f"the trainer died ({reason}); kept version {self.version}, started a new trainer"})
            await self._replace_trainer()
            return
        self.version = report.version
        checkpoint = await self._call("save", self.checkpoints)
        publication = await self._publish(runner.pool)
        entry = {"version": self.version, "event": "trained", "episodes": episodes,
                 "started": self.phase_started, "ended": time.time(),
                 "kind": report.kind, "examples": report.examples, "steps": report.steps,
                 "loss_first": report.losses[0], "loss_last": report.losses[-1], "losses": list(report.losses),
                 "seconds": round(report.seconds, 2), "tokens_per_s": round(report.tokens_per_s, 1),
                 "samples_per_s": round(report.samples_per_s, 2), "checkpoint": str(checkpoint),
                 "published_to": list(publication.acknowledged), "publish_failed": publication.failed,
                 "publish_s": round(publication.seconds, 3)}
        if self.evaluation is not None and publication.ok:
            runner.report(f"evaluating {self.model} v{self.version}")
            entry.update(await self.evaluation(runner.pool))
        self._record(entry)

    async def _with_status(self, runner: Runner, call):
        """Await a training call, relaying its step, loss and samples/s to the progress display."""
        task = asyncio.ensure_future(call)
        while not task.done():
            await asyncio.wait([task], timeout=1.0)
            if task.done():
                break
            status = await self._call("status")
            if status["phase"]:
                runner.report(f"training {self.model} v{status['version'] + 1}: step {status['step']}/"
                              f"{status['steps']}, loss {status['loss']:.3f}, {status['samples_per_s']:.1f} samples/s")
        return task.result()

    async def _publish(self, pool):
        receivers = {self.model: pool.server(self.model)}
        if self.use_ray:
            return await self._call("publish_to", receivers, self.section.publish, self.section.publish_timeout_s)
        weights = self.trainer.weights(self.section.publish)
        return publish_local(receivers, weights, self.version, self.section.publish, self.trainer.lora_settings())

    def _record(self, entry: dict) -> None:
        self.history.append(entry)
        with open(self.history_file, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def summary(self) -> dict:
        trained = [h for h in self.history if h["event"] == "trained"]
        return {"model": self.model, "versions": [h["version"] for h in trained], "phases": self.history,
                "training_s": round(sum(h["seconds"] for h in trained), 2),
                "accuracy": [(h["version"], h["accuracy"]) for h in self.history if "accuracy" in h]}
