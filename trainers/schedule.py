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
from academe.agents.records import Task
from academe.protocols.engine import Distill, Options, Protocol
from academe.simulation.config import TrainingSection
from academe.simulation.log import LogTail
from academe.simulation.records import StepRecord
from academe.simulation.runner import Runner
from academe.trainers.data import LogFilter, build
from academe.trainers.evaluate import accuracy
from academe.trainers.handle import ModelTrainer, TrainerDied
from academe.trainers.trainer import PhaseReport, TrainingFailed

PHASES_FILE = "training.jsonl"


class Evaluation:
    """Held-out accuracy of one agent, measured through the model actor it uses."""

    def __init__(self, agent: AgentSpec, protocol: Protocol, options: Options, tasks: list[Task],
                 also: dict[str, list[Task]] | None = None):
        self.agent, self.protocol, self.options, self.tasks, self.also = agent, protocol, options, tasks, also or {}

    async def __call__(self, pool) -> dict:
        share, version = await accuracy(pool, self.agent, self.protocol, self.options, self.tasks)
        entry = {"accuracy": share, "version": version, "tasks": len(self.tasks)}
        if self.also:
            entry["also"] = {name: (await accuracy(pool, self.agent, self.protocol, self.options, tasks))[0]
                             for name, tasks in self.also.items()}
        return entry


class ScheduledTraining:
    """The runner hook that trains one model every K finished episodes of a protocol run."""

    def __init__(self, model: str, section: TrainingSection, spec: ModelSpec, protocol: Protocol,
                 run_dir: Path, use_ray: bool, evaluation: Evaluation | None = None):
        self.model, self.section, self.protocol, self.run_dir = model, section, protocol, Path(run_dir)
        self.declaration = protocol.training_for(section.role, section.kind)
        self.evaluation = evaluation
        self.history_file = self.run_dir / PHASES_FILE
        self.history = [json.loads(line) for line in open(self.history_file)] if self.history_file.exists() else []
        self.trainer = ModelTrainer(model, spec, section, run_dir, use_ray)
        self.pauses = section.wait
        self.next_at = section.every_episodes
        self.training_s = 0.0
        self.phase_started = 0.0
        self.tail: LogTail | None = None  # the log, read as it grows (made once the log exists)
        self.turns: list[StepRecord] = []  # every logged step so far, without state and asks: the data

    @property
    def version(self) -> int:
        return self.trainer.version

    async def start(self, pool, finished: int) -> None:
        """Before the run (or a resumed run) starts: restore the last checkpoint and publish it,
        or measure the untrained model."""
        every = self.section.every_episodes
        self.next_at = (finished // every + 1) * every
        if await self.trainer.restore() is not None:
            await self.trainer.publish(pool)
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
        self.turns += await asyncio.to_thread(self._new_turns)
        staleness = self.section.max_staleness
        where = LogFilter(min_version=None if staleness is None else max(0, self.version - staleness))
        examples = build(self.turns, self.declaration, where)
        if len(examples) < self.section.min_examples:
            self._record({"version": self.version, "event": "skipped", "episodes": episodes,
                          "reason": f"{len(examples)} example(s) from the log (need {self.section.min_examples}); "
                                    f"kept version {self.version}"})
            return
        kind = "sft" if self.declaration.kind in ("sft", "distill") else "dpo"
        try:
            report = await self.trainer.train(kind, examples, lambda st: runner.report(self.trainer.status_line(st)))
        except (TrainingFailed, TrainerDied) as exc:
            self._record({"version": self.version, "event": "failed", "reason": str(exc)})
            return
        checkpoint = await self.trainer.save()
        publication = await self.trainer.publish(runner.pool)
        entry = {"version": self.version, "event": "trained", "episodes": episodes,
                 "started": self.phase_started, "ended": time.time(), **phase_figures(report),
                 "checkpoint": str(checkpoint), "published_to": list(publication.acknowledged),
                 "publish_failed": publication.failed, "publish_s": round(publication.seconds, 3)}
        if self.evaluation is not None and publication.ok:
            runner.report(f"evaluating {self.model} v{self.version}")
            entry.update(await self.evaluation(runner.pool))
        self._record(entry)

    def _new_turns(self) -> list[StepRecord]:
        """The steps logged since the last phase, kept as what training data is made of: the turns
        of the role the data comes from, and the outcome (a phase reads only what is new, never the
        whole log again, and keeps no state, asks or other roles' turns)."""
        self.tail = self.tail or LogTail(self.run_dir)
        source = self.declaration.teacher if isinstance(self.declaration, Distill) else self.declaration.role
        return [r.model_copy(update={"state": None, "asks": (), "turns": tuple(t for t in r.turns if t.role == source)})
                for r in self.tail.read()]

    def _record(self, entry: dict) -> None:
        self.history.append(entry)
        with open(self.history_file, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def summary(self) -> dict:
        return training_summary(self.model, self.history) | {"checkpoints_set_aside": self.trainer.set_aside}


def phase_figures(report: PhaseReport) -> dict:
    """What a training phase's log entry says of the phase itself."""
    return {"kind": report.kind, "examples": report.examples, "steps": report.steps, "tokens": report.tokens,
            "loss_first": report.losses[0], "loss_last": report.losses[-1], "losses": list(report.losses),
            "seconds": round(report.seconds, 2), "tokens_per_s": round(report.tokens_per_s, 1),
            "samples_per_s": round(report.samples_per_s, 2)}


def training_summary(model: str, history: list[dict]) -> dict:
    trained = [h for h in history if h["event"] == "trained"]
    return {"model": model, "versions": [h["version"] for h in trained], "phases": history,
            "training_s": round(sum(h["seconds"] for h in trained), 2),
            "accuracy": [(h["version"], h["accuracy"]) for h in history if h.get("accuracy") is not None]}
