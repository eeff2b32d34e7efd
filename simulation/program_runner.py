"""Runs a round-level program: asks it for the next action, logs the decision, does it, repeats.

The model actors, the runner and the trainers live for the whole program. ``program.jsonl`` holds
one decision record per action (written and fsynced before the action starts) and one result
record per finished action. Episode results are always read back from the dialogue log, training
and evaluation results from their result records, so a program continued after a crash sees
exactly what an uninterrupted one saw. To continue, the program is replayed from its start through
its logged results (its step functions are pure); each recomputed decision must equal the logged
one, which also catches a program changed under a running simulation.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal

from pydantic import Field, TypeAdapter, ValidationError

from academe.agents.agent import AgentSpec
from academe.agents.records import Record, Task
from academe.protocols.engine import EpisodeState
from academe.protocols.program import (Action, Episodes, EpisodeResult, Evaluate, Evaluated, Program, RunEpisodes,
                                       Stop, Train, Trained, Turn)
from academe.simulation.log import read_steps
from academe.simulation.records import StepRecord
from academe.simulation.runner import Batch, Runner, restore

PROGRAM_LOG = "program.jsonl"


class DecisionRecord(Record):
    """What the program decided, before it is done: the action (with the program's state)."""

    type: Literal["decision"] = "decision"
    n: int = Field(ge=0)
    round: int
    kind: str
    stage: str | None
    action: Any
    first_episode: int | None = None  # episodes: ids first_episode .. first_episode + len(tasks) - 1
    from_version: int | None = None  # train: the model version training starts from
    time: float


class ResultRecord(Record):
    """An action that finished; episodes' results live in the dialogue log, the others here."""

    type: Literal["result"] = "result"
    n: int = Field(ge=0)
    result: Any
    seconds: float = Field(ge=0, description="how long the action took (kept out of the program's state: "
                           "a program must decide the same whatever the timing)")
    time: float


PROGRAM_RECORD = TypeAdapter(DecisionRecord | ResultRecord)


def same_as_logged(logged, again) -> bool:
    """Whether a decision made again is the logged one. A key the logged record lacks is a field
    academe gained since the run started (at its default, or the run would differ elsewhere too):
    it is not compared, so an upgrade does not stop a run from resuming."""
    if isinstance(logged, dict) and isinstance(again, dict):
        return all(key in again and same_as_logged(value, again[key]) for key, value in logged.items())
    if isinstance(logged, list) and isinstance(again, list):
        return len(logged) == len(again) and all(map(same_as_logged, logged, again))
    return logged == again


class ProgramDiverged(RuntimeError):
    """Replaying a program through its log gave another decision than the one logged: decision
    ``n`` differs in ``field`` (``logged`` then, ``again`` now); ``checked`` are the decisions before."""

    def __init__(self, message: str, n: int, field: str, logged, again, checked: list):
        super().__init__(message)
        self.n, self.field, self.logged, self.again, self.checked = n, field, logged, again, checked


class ProgramLog:
    """``program.jsonl``: append-only, fsynced per record; a line torn by a crash is cut on open."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / PROGRAM_LOG
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):  # that record never counted: its action was not begun
                with open(self.path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)

    def read(self) -> tuple[list[DecisionRecord], dict[int, ResultRecord]]:
        decisions, results = [], {}
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    record = PROGRAM_RECORD.validate_json(line)
                    if isinstance(record, DecisionRecord):
                        decisions.append(record)
                    else:
                        results[record.n] = record
        return decisions, results

    def write(self, record: DecisionRecord | ResultRecord) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(record.model_dump_json() + "\n")
            f.flush()
            os.fsync(f.fileno())


@dataclass
class Services:
    """What the program runner drives besides the episode runner (built by the composition root)."""

    trainers: dict[str, Any]  # model name -> ModelTrainer
    evaluate: Callable[[AgentSpec, Any, list[Task]], Awaitable[tuple[float, int]]]  # -> (accuracy, version)
    version: Callable[[str], int]  # model name -> the version its actor serves
    publish: Callable[[Any], Awaitable[Any]]  # trainer -> publication report


class ProgramRunner:
    def __init__(self, program: Program, options, cast: dict[str, tuple[AgentSpec, ...]], runner: Runner,
                 services: Services, run_dir: Path, held_out: list[Task], also: dict[str, list[Task]] | None = None):
        self.program, self.options, self.cast, self.runner = program, options, cast, runner
        self.services, self.run_dir, self.held_out, self.also = services, Path(run_dir), held_out, also or {}
        self.log = ProgramLog(run_dir)

    def run(self, tasks: list[Task]) -> tuple[Stop, list[DecisionRecord], dict[int, ResultRecord]]:
        """Run (or continue) the program to its end; returns its Stop, decisions and results."""
        decisions, results = self.log.read()
        action = self.program.begin(tuple(tasks), tuple(self.held_out), self.options)
        next_episode = 0
        for n in itertools.count():
            if n < len(decisions):
                decision = decisions[n]
                self._check_same(decision, action, decisions[:n])
            else:
                decision = self._decide(n, action, next_episode)
                decisions.append(decision)
            if isinstance(action, Stop):
                return action, decisions, results
            if n in results:
                result = self._read_result(action, decision, results[n])
            else:
                started = time.perf_counter()
                result = self._act(action, decision)
                results[n] = ResultRecord(n=n, result=self._storable(result, decision),
                                          seconds=round(time.perf_counter() - started, 3), time=time.time())
                self.log.write(results[n])
            if isinstance(action, RunEpisodes):
                next_episode = decision.first_episode + len(action.tasks)
            action = self.program.step(action.stage, action.state, result)

    # ---- decisions ----
    def _decide(self, n: int, action: Action, next_episode: int) -> DecisionRecord:
        from_version = None
        if isinstance(action, Train):
            from_version = self._trainer(action).version
        decision = DecisionRecord(n=n, round=action.state.round, kind=action.kind,
                                  stage=None if isinstance(action, Stop) else action.stage, action=action,
                                  first_episode=next_episode if isinstance(action, RunEpisodes) else None,
                                  from_version=from_version, time=time.time())
        self.log.write(decision)  # durable before anything of it is done
        return decision

    def replay(self, tasks: list[Task]) -> list[DecisionRecord]:
        """Recompute every logged decision from the logged results (``ProgramDiverged`` at the
        first that differs); returns the decisions, all checked. Runs nothing."""
        decisions, results = self.log.read()
        action = self.program.begin(tuple(tasks), tuple(self.held_out), self.options)
        for n, decision in enumerate(decisions):
            self._check_same(decision, action, decisions[:n])
            if isinstance(action, Stop) or n not in results:
                break
            action = self.program.step(action.stage, action.state, self._read_result(action, decision, results[n]))
        return decisions

    def _check_same(self, decision: DecisionRecord, action: Action, checked: list[DecisionRecord]) -> None:
        again = json.loads(action.model_dump_json())
        if not same_as_logged(decision.action, again):
            field = next((k for k in decision.action if not same_as_logged(decision.action[k], again.get(k))), "?")
            raise ProgramDiverged(
                f"program {self.program.name!r}: decision {decision.n} ({decision.kind}, round {decision.round}) "
                f"differs from the logged one in {field!r}: the program, its options or its tasks changed since "
                f"this run started. Run it as a new simulation instead of resuming {self.run_dir}",
                decision.n, field, decision.action.get(field), again.get(field), checked)

    # ---- doing ----
    def _act(self, action: Action, decision: DecisionRecord):
        self.runner.report(f"round {action.state.round}: {action.kind} -> {action.stage}")
        if isinstance(action, RunEpisodes):
            return self._episodes(action, decision.first_episode)
        if isinstance(action, Train):
            return asyncio.run(self._train(action, decision))
        return asyncio.run(self._evaluate(action))

    def _episodes(self, action: RunEpisodes, first: int) -> Episodes:
        """Run the action's episodes; those a killed run had begun continue from the log."""
        protocol = self.program.protocol(action.protocol)
        cast = {role: self.cast[action.cast.get(role, role)] for role in protocol.roles}
        ids = range(first, first + len(action.tasks))
        restored, finished = restore(protocol, self.run_dir, ids)
        batch = Batch(protocol=protocol, options=protocol.parse_options(action.options), cast=cast,
                      tasks=dict(zip(ids, action.tasks)), round=action.state.round)
        self.runner.run(batch, restored, finished)
        return episode_results(read_steps(self.run_dir, episodes=ids), protocol, ids)

    def _agent(self, action: Train | Evaluate) -> AgentSpec:
        agents = self.cast.get(action.role, ())
        if action.seat >= len(agents):
            raise ValueError(f"program {self.program.name!r} asked for seat {action.seat} of role {action.role!r}, "
                             f"which has {len(agents)} agent(s)")
        return agents[action.seat]

    def _trainer(self, action: Train):
        model = self._agent(action).model
        if model not in self.services.trainers:
            raise ValueError(f"program {self.program.name!r} trains role {action.role!r}, whose model {model!r} "
                             f"has no training section; add training.{model} to the config")
        return self.services.trainers[model]

    async def _train(self, action: Train, decision: DecisionRecord) -> Trained:
        agent, trainer = self._agent(action), self._trainer(action)
        if trainer.version > decision.from_version:  # trained and saved before a crash: do not train again
            report = trainer.saved_report(trainer.version)
            if report is None:
                raise RuntimeError(f"checkpoint v{trainer.version} of {agent.model} has no phase report; it was not "
                                   f"made by this program's decision {decision.n}")
            return Trained.model_validate(report)
        as_asked = lambda messages: agent.prompt(messages, seed=0).messages  # noqa: E731 - the agent's persona
        if action.pairs:
            kind, data = "dpo", [p.replace(messages=as_asked(p.messages)) for p in action.pairs]
        else:
            kind, data = "sft", [e.replace(messages=as_asked(e.messages)) for e in action.sft]
        base = dict(role=action.role, model=agent.model, version=trainer.version, examples=len(data))
        if len(data) < trainer.section.min_examples:
            return Trained(**base, skipped=f"{len(data)} example(s) (need {trainer.section.min_examples}); "
                                           f"kept version {trainer.version}")
        from academe.trainers.handle import TrainerDied
        from academe.trainers.trainer import TrainingFailed

        try:
            report = await trainer.train(kind, data, lambda st: self.runner.report(trainer.status_line(st)),
                                         from_base=action.from_base)
        except (TrainingFailed, TrainerDied) as exc:
            return Trained(**base, skipped=str(exc))
        trained = Trained(**dict(base, version=report.version), steps=report.steps, tokens=report.tokens,
                          loss_first=report.losses[0],
                          loss_last=report.losses[-1], losses=report.losses)
        await trainer.save(trained.model_dump(mode="json"))
        publication = await self.services.publish(trainer)
        if not publication.ok:
            raise RuntimeError(f"publishing {agent.model} v{trainer.version} failed: {publication.failed}; "
                               f"the checkpoint is saved: resume the run to publish it again")
        return trained

    async def _evaluate(self, action: Evaluate) -> Evaluated:
        agent = self._agent(action)
        protocol = self.program.protocol(action.protocol)
        if not self.held_out:
            version = self.services.version(agent.model)
            return Evaluated(role=action.role, model=agent.model, version=version, accuracy=None, tasks=0)
        accuracy, version = await self.services.evaluate(agent, protocol, self.held_out)
        also = {name: (await self.services.evaluate(agent, protocol, tasks))[0] for name, tasks in self.also.items()}
        return Evaluated(role=action.role, model=agent.model, version=version, accuracy=accuracy,
                         tasks=len(self.held_out), also=also)

    # ---- results ----
    def _storable(self, result, decision: DecisionRecord):
        if isinstance(result, Episodes):
            return {"kind": "episodes", "first": decision.first_episode, "count": len(result.episodes)}
        return json.loads(result.model_dump_json())

    def _read_result(self, action: Action, decision: DecisionRecord, record: ResultRecord):
        if isinstance(action, RunEpisodes):
            protocol = self.program.protocol(action.protocol)
            ids = range(decision.first_episode, decision.first_episode + len(action.tasks))
            return episode_results(read_steps(self.run_dir, episodes=ids), protocol, ids)
        return (Trained if isinstance(action, Train) else Evaluated).model_validate(record.result)


def episode_results(records, protocol, ids: range) -> Episodes:
    """The finished episodes ``ids`` as a program sees them, in id order."""
    by_episode: dict[int, list[StepRecord]] = {}
    for record in records:
        by_episode.setdefault(record.episode, []).append(record)
    results = []
    for episode in ids:
        steps = sorted(by_episode.get(episode, []), key=lambda r: r.step)
        if not steps or steps[-1].outcome is None:
            raise RuntimeError(f"episode {episode} did not finish; resume the run to finish it")
        turns = tuple(Turn(step=r.step, phase=r.phase, role=t.role, seat=t.seat, agent=t.agent, asked=t.asked,
                           sent=t.prompt.messages, reply=t.reply) for r in steps for t in r.turns)
        state = final_state(steps[-1], protocol)
        results.append(EpisodeResult(episode=episode, task=state.task, outcome=steps[-1].outcome, state=state,
                                     turns=turns))
    return Episodes(episodes=tuple(results))


def final_state(record: StepRecord, protocol) -> EpisodeState:
    """An episode's last state; one that failed before its protocol made a state has only its task."""
    try:
        return record.episode_state(protocol)
    except ValidationError:
        if record.outcome is None or record.outcome.error is None:
            raise
        return EpisodeState(task=protocol.task.model_validate(record.task))
