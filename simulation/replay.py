"""Reading logged dialogues back exactly as they happened: ``academe replay``.

Episodes are rebuilt from the step records into views (who said what, with which model version,
under which move) that the terminal printer, ``--json``, ``compare`` and the HTML page share.
Filters pick episodes (id, round, outcome, errors) and turns (role, agent, model version).
"""

from __future__ import annotations

import json
import textwrap
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Literal

from rich.console import Console
from rich.markup import escape

from academe.simulation.lineage import read_lineage
from academe.simulation.log import read_steps
from academe.simulation.records import StepRecord

OutcomeFilter = Literal["solved", "unsolved", "ungraded", "error", "unfinished"]


def episodes_of(run_dir: str | Path, damaged: list[str] | None = None) -> dict[int, list[StepRecord]]:
    """Step records grouped by episode, each list in step order."""
    grouped: dict[int, list[StepRecord]] = defaultdict(list)
    for record in read_steps(run_dir, damaged=damaged):
        grouped[record.episode].append(record)
    return {e: sorted(records, key=lambda r: r.step) for e, records in sorted(grouped.items())}


@dataclass
class TurnView:
    step: int
    phase: str
    role: str
    seat: int
    agent: str
    model: str
    model_version: int
    text: str
    move: str | None = None  # the protocol's annotation of the turn (a teacher's move)
    error: str | None = None
    finish_reason: str = "stop"
    completion_tokens: int = 0
    inherited: bool = False  # a fork's turn copied from its parent, not spoken in this run


@dataclass
class EpisodeView:
    run: str
    episode: int
    round: int | None
    protocol: str
    task: dict
    turns: list[TurnView]
    outcome: dict | None  # None: unfinished
    notes: list[str] = field(default_factory=list)  # e.g. replies that did not parse
    parent: dict | None = None  # a fork's parent: {"run", "episode", "step"}
    parent_turns: list[TurnView] = field(default_factory=list)  # what the parent said where this fork spoke

    @property
    def status(self) -> OutcomeFilter:
        if self.outcome is None:
            return "unfinished"
        if self.outcome.get("error"):
            return "error"
        return {True: "solved", False: "unsolved", None: "ungraded"}[self.outcome.get("solved")]

    @property
    def has_error(self) -> bool:
        return self.status == "error" or any(t.error for t in self.turns)

    def to_json(self) -> dict:
        return asdict(self) | {"status": self.status}


def episode_view(records: list[StepRecord], parent: dict | None = None) -> EpisodeView:
    turns, notes = [], []
    fork_step = parent["step"] if parent else -1
    for record in records:
        for turn in record.turns:
            reply = turn.reply
            turns.append(TurnView(step=record.step, phase=record.phase, role=turn.role, seat=turn.seat,
                                  agent=turn.agent, model=reply.model, model_version=reply.model_version,
                                  text=reply.text, move=record.notes.get("move"), error=reply.error,
                                  finish_reason=reply.finish_reason, completion_tokens=reply.completion_tokens,
                                  inherited=record.step <= fork_step))
        if record.notes.get("parse"):
            notes.append(f"step {record.step}: {record.notes['parse']}")
    last = records[-1]
    return EpisodeView(run=last.run, episode=last.episode, round=last.round, protocol=last.protocol,
                       task=last.task, turns=turns,
                       outcome=None if last.outcome is None else last.outcome.model_dump(mode="json"),
                       notes=notes, parent=parent)


@dataclass(frozen=True)
class Filters:
    """Episode filters (ids, round, outcome, errors) and turn filters (role, agent, model version)."""

    episodes: tuple[int, ...] = ()
    round: int | None = None
    outcome: OutcomeFilter | None = None
    errors: bool = False
    role: str | None = None
    agent: str | None = None
    version: int | None = None

    def turn_matches(self, turn: TurnView) -> bool:
        return ((self.role is None or turn.role == self.role) and (self.agent is None or turn.agent == self.agent)
                and (self.version is None or turn.model_version == self.version))

    @property
    def by_turn(self) -> bool:
        return (self.role, self.agent, self.version) != (None, None, None)

    def apply(self, view: EpisodeView) -> EpisodeView | None:
        if self.episodes and view.episode not in self.episodes:
            return None
        if (self.round is not None and view.round != self.round) or (self.outcome and view.status != self.outcome):
            return None
        if self.errors and not view.has_error:
            return None
        if self.by_turn:
            turns = [t for t in view.turns if self.turn_matches(t)]
            if not turns:
                return None
            view = replace(view, turns=turns)
        return view


def load_views(run_dir: str | Path, filters: Filters = Filters(), damaged: list[str] | None = None) -> list[EpisodeView]:
    """The run's episodes as views, filtered; asking for an episode the run lacks is an error."""
    grouped = episodes_of(run_dir, damaged)
    missing = [e for e in filters.episodes if e not in grouped]
    if missing:
        ids = f"episodes {min(grouped)}..{max(grouped)}" if grouped else "no episodes"
        raise KeyError(f"episode {', '.join(map(str, missing))} is not in {run_dir}; it has {ids}")
    lineage = read_lineage(run_dir)
    parents = {} if lineage is None else {e: o.model_dump() for e, o in lineage.episodes.items()}
    views = [episode_view(records, parents.get(e)) for e, records in grouped.items()]
    if lineage is not None and lineage.kind == "fork" and Path(lineage.source).is_dir():
        add_parent_turns(views, Path(lineage.source))
    return [v for v in map(filters.apply, views) if v is not None]


def add_parent_turns(views: list[EpisodeView], parent_dir: Path) -> None:
    """Beside each forked episode's live turns, the parent's turns over the same steps."""
    wanted = {v.parent["episode"] for v in views if v.parent}
    parent = {e: episode_view(records) for e, records in episodes_of(parent_dir).items() if e in wanted}
    for view in views:
        if view.parent and view.parent["episode"] in parent:
            live = {t.step for t in view.turns if not t.inherited}
            view.parent_turns = [t for t in parent[view.parent["episode"]].turns if t.step in live]


def write_json(views: Iterable[EpisodeView], out) -> None:
    for view in views:
        out.write(json.dumps(view.to_json(), ensure_ascii=False) + "\n")


def print_dialogues(views: Iterable[EpisodeView], console: Console) -> None:
    for view in views:
        print_dialogue(view, console)


def print_dialogue(view: EpisodeView, console: Console) -> None:
    task = view.task
    where = f" · round {view.round}" if view.round is not None else ""
    console.rule(f"episode {view.episode} · {view.protocol}{where} · task {escape(str(task['id']))}")
    if view.parent:
        console.print(f"[dim]forked from {escape(view.parent['run'])} episode {view.parent['episode']} "
                      f"at step {view.parent['step']}[/]")
    answer = f"  [dim](answer {escape(task['answer'])})[/]" if task.get("answer") is not None else ""
    console.print(f"[bold]problem[/]: {escape(task['question'])}{answer}")
    if task.get("profile"):
        console.print(f"[bold]student[/]: {escape(task['profile'])}")
    if task.get("attempt"):
        console.print("[bold]the student's attempt[/] [dim](given with the task)[/]")
        console.print(textwrap.indent(escape(task["attempt"]), "  "))
    for turn in view.turns:
        label = turn.role + (f" ({turn.move})" if turn.move else "")
        origin = f"{turn.agent} · {turn.model} v{turn.model_version}" + (" · from parent" if turn.inherited else "")
        console.print(f"[bold cyan]{escape(label)}[/] [dim]step {turn.step} · {escape(origin)}[/]")
        console.print(textwrap.indent(escape(turn.text or "(empty)"), "  "))
        if turn.error:
            console.print(f"  [red]error: {escape(turn.error)}[/]")
    for turn in view.parent_turns:
        console.print(f"[dim]in the parent, step {turn.step}: {escape(turn.role)} · {escape(turn.agent)} · "
                      f"{escape(turn.model)} v{turn.model_version}[/]")
        console.print(textwrap.indent(escape(turn.text or "(empty)"), "  | "))
    for note in view.notes:
        console.print(f"  [yellow]{escape(note)}[/]")
    o = view.outcome
    if o is None:
        console.print("[yellow]unfinished: resume the run to continue it[/]")
        return
    verdict = {True: "[green]solved[/]", False: "[red]not solved[/]", None: ""}[o["solved"]]
    score = f" score {o['score']:g}" if o["score"] is not None else ""
    extra = ", ".join(f"{k}={v:g}" for k, v in o["metrics"].items())
    console.print(f"outcome: {verdict}{score} {extra}" + (f" [red]{escape(o['error'])}[/]" if o["error"] else ""))
