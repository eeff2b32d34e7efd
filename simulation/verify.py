"""Verified re-execution: feed a run's logged replies back through its protocol (and program) and
check that today's code produces every logged prompt, seed, state and transition again.

The step functions are pure and the runner's bookkeeping (``begin_step``, ``next_step``,
``step_record``) is shared with the live path, so a run verifies exactly when the current code,
given the same replies, would have written the same log. Only wall-clock fields are not compared.
The first divergence of each episode is reported with the field and both values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from academe.protocols.engine import START
from academe.simulation.config import load_config
from academe.simulation.fork import fork_batch
from academe.simulation.lineage import read_lineage
from academe.simulation.records import StepRecord
from academe.simulation.replay import episodes_of
from academe.simulation.run_folder import CONFIG_FILE
from academe.simulation.runner import Batch, begin_step, next_step, step_record

UNCOMPARED = ("time", "started", "ended")  # wall-clock fields: they differ on every run


@dataclass
class Divergence:
    episode: int | None  # None: a program decision
    step: int
    field: str
    logged: Any
    again: Any

    def __str__(self) -> str:
        where = f"episode {self.episode} step {self.step}" if self.episode is not None else f"decision {self.step}"
        return f"{where}: {self.field}\n  logged: {shorten(self.logged)}\n  now:    {shorten(self.again)}"


@dataclass
class Verification:
    episodes: int = 0
    steps: int = 0
    decisions: int = 0
    divergences: list[Divergence] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergences and not self.damaged


def shorten(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def first_difference(logged: Any, again: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first path at which two JSON values differ, with both values there."""
    if isinstance(logged, dict) and isinstance(again, dict):
        for key in list(logged) + [k for k in again if k not in logged]:
            if key in UNCOMPARED:
                continue
            found = first_difference(logged.get(key), again.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(logged, list) and isinstance(again, list):
        for i, (a, b) in enumerate(zip(logged, again)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        if len(logged) != len(again):
            return f"{path} (length)", len(logged), len(again)
        return None
    return None if logged == again else (path, logged, again)


def verify_run(run_dir: str | Path) -> Verification:
    """Re-execute every episode of a run (and a program's decisions) against its log."""
    from academe.simulation.simulate import plan

    run_dir = Path(run_dir)
    result = Verification()
    grouped = episodes_of(run_dir, result.damaged)  # also: not a run folder -> FileNotFoundError
    lineage = read_lineage(run_dir)
    if lineage is not None and lineage.kind == "import":
        result.skipped.append(f"{run_dir} holds imported dialogues ({lineage.source}): no code produced them")
        return result
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} has no {CONFIG_FILE}: not a run folder")
    config = load_config(run_dir / CONFIG_FILE)
    checked = plan(config)
    agents = {a.name: a for agents_ in checked.cast.values() for a in agents_}
    if checked.program is not None:
        batches = program_batches(run_dir, checked, result)
    else:
        batch = (fork_batch(checked, lineage) if lineage else
                 Batch(checked.protocol, checked.options, checked.cast, dict(enumerate(checked.tasks))))
        batches = {e: batch for e in batch.tasks}
    forked_at = {e: o.step for e, o in lineage.episodes.items()} if lineage else {}
    for episode, records in grouped.items():
        result.episodes += 1
        if episode not in batches:
            result.divergences.append(Divergence(episode, 0, "episode", "in the log", "no action or task makes it"))
            continue
        divergence = verify_episode(records, batches[episode], config.run.seed, agents, forked_at.get(episode))
        result.steps += len(records)
        if divergence is not None:
            result.divergences.append(divergence)
    return result


def verify_episode(records: list[StepRecord], batch: Batch, seed: int, agents: dict, fork_step: int | None):
    """The first divergence of one episode, or None. A fork is checked from its fork step on (the
    steps before it were its parent's, checked there)."""
    first = 0 if fork_step is None else fork_step + 1
    for previous, record in zip([None] + records, records):
        if record.step < first:
            continue
        if previous is None:
            expected = begin_step(batch, batch.tasks[record.episode])
            again = step_record(batch, record.run, seed, agents, record.episode, START, 0, (), expected)
        else:
            if record.phase != previous.next_phase or record.step != previous.step + 1:
                return Divergence(record.episode, record.step, "phase", previous.next_phase, record.phase)
            state = previous.episode_state(batch.protocol)
            expected = next_step(batch.protocol, previous.next_phase, state, record.turns)
            again = step_record(batch, record.run, seed, agents, record.episode, record.phase, record.step,
                                record.turns, expected)
        found = first_difference(json.loads(record.model_dump_json()), json.loads(again.model_dump_json()))
        if found is not None:
            return Divergence(record.episode, record.step, *found)
        if previous is not None:  # each turn answered exactly the ask logged before it
            for turn, ask in zip(record.turns, [a.model_dump(mode="json") for a in previous.asks]):
                found = first_difference(ask, turn.model_dump(mode="json", include=set(ask)))
                if found is not None:
                    return Divergence(record.episode, record.step, f"turns[{turn.index}].{found[0]}", *found[1:])
    return None


def program_batches(run_dir: Path, checked, result: Verification) -> dict[int, Batch]:
    """Replay the program's decisions through its logged results (each must come out the same);
    returns the batch each logged episode was run in."""
    from academe.simulation.program_runner import ProgramDiverged, ProgramRunner

    program_runner = ProgramRunner(checked.program, checked.options, checked.cast, None, None, run_dir,
                                   checked.held_out)
    try:
        decisions = program_runner.replay(checked.tasks)
    except ProgramDiverged as exc:
        result.divergences.append(Divergence(None, exc.n, f"action.{exc.field}", exc.logged, exc.again))
        decisions = exc.checked
    result.decisions = len(decisions)
    batches = {}
    for decision in decisions:
        action = decision.action
        if decision.kind != "run-episodes":
            continue
        protocol = checked.program.protocol(action["protocol"])
        cast = {role: checked.cast[action["cast"].get(role, role)] for role in protocol.roles}
        ids = range(decision.first_episode, decision.first_episode + len(action["tasks"]))
        tasks = [protocol.task.model_validate(t) for t in action["tasks"]]
        batch = Batch(protocol, protocol.parse_options(action["options"]), cast, dict(zip(ids, tasks)),
                      round=decision.round)
        batches.update({e: batch for e in ids})
    return batches

