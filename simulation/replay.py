"""Reading logged dialogues back: ``academe replay`` prints them turn by turn."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from academe.simulation.log import read_steps
from academe.simulation.records import StepRecord


def episodes_of(run_dir: str | Path) -> dict[int, list[StepRecord]]:
    """Step records grouped by episode, each list in step order."""
    grouped: dict[int, list[StepRecord]] = defaultdict(list)
    for record in read_steps(run_dir):
        grouped[record.episode].append(record)
    return {e: sorted(records, key=lambda r: r.step) for e, records in sorted(grouped.items())}


def print_dialogues(run_dir: str | Path, episode: int | None, console: Console) -> None:
    grouped = episodes_of(run_dir)
    if episode is not None:
        if episode not in grouped:
            raise KeyError(f"episode {episode} is not in {run_dir}; it has episodes 0..{max(grouped, default=-1)}")
        grouped = {episode: grouped[episode]}
    for episode_id, records in grouped.items():
        task = records[0].task
        where = f" · round {records[0].round}" if records[0].round is not None else ""
        console.rule(f"episode {episode_id} · {records[0].protocol}{where} · task {task['id']}")
        answer = f"  [dim](answer {task['answer']})[/]" if task.get("answer") is not None else ""
        console.print(f"[bold]problem[/]: {escape(task['question'])}{answer}")
        for record in records:
            for turn in record.turns:
                reply = turn.reply
                move = record.notes.get("move")
                label = f"{turn.role}" + (f" ({move})" if move else "")
                origin = f"{turn.agent} · {reply.model} v{reply.model_version}"
                console.print(f"[bold cyan]{label}[/] [dim]step {record.step} · {origin}[/]")
                console.print(textwrap.indent(escape(reply.text or "(empty)"), "  "))
                if reply.error:
                    console.print(f"  [red]error: {escape(reply.error)}[/]")
            if record.notes.get("parse"):
                console.print(f"  [yellow]{escape(record.notes['parse'])}[/]")
            if record.outcome is not None:
                o = record.outcome
                verdict = {True: "[green]solved[/]", False: "[red]not solved[/]", None: ""}[o.solved]
                score = f" score {o.score:g}" if o.score is not None else ""
                extra = ", ".join(f"{k}={v:g}" for k, v in o.metrics.items())
                console.print(f"outcome: {verdict}{score} {extra}" + (f" [red]{escape(o.error)}[/]" if o.error else ""))
        if records[-1].outcome is None:
            console.print("[yellow]unfinished: resume the run to continue it[/]")
