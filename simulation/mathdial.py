"""``academe import mathdial PATH``: real tutoring dialogues as a run folder in academe's log format.

Each readable row becomes one Socratic tutoring episode whose turns were spoken by people (model
``human``, version 0): the student's incorrect solution opens it, the teacher's move is the
annotation of each teacher turn, and every step record holds the prompt the protocol would give
the next speaker, so the dialogue can be replayed, exported, and forked before any turn with a
model in a person's place. The episode's outcome is measured the way MathDial defines it: success
(a student turn states the reference answer; success@k counts the student's attempt as turn 1)
and telling (a teacher turn states the answer before the student did; telling@k).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from academe.agents.records import Reply
from academe.protocols.engine import START, Done, Outcome, ask
from academe.protocols.grading import is_correct, mentions
from academe.protocols.mathdial import SELF_CORRECTNESS, Dialogue, read_mathdial
from academe.protocols.tasks import resolve_task_path
from academe.protocols.socratic import Tutoring, student_view, teacher_view
from academe.simulation.config import parse_config
from academe.simulation.run_folder import SUMMARY_FILE, write_config
from academe.simulation.lineage import Lineage, write_lineage
from academe.simulation.log import DialogueLog
from academe.simulation.records import TurnRecord
from academe.simulation.runner import Batch, step_record
from academe.simulation.summary import outcome_summary

HUMAN = {"kind": "scripted", "path": "academe.protocols.mathdial:human", "num_cpus": 0}
UNLABELLED = "unlabelled"


def import_config(path: Path, episodes: int, name: str, out_dir: str, limit: int | None) -> dict:
    return {"run": {"name": name, "episodes": episodes, "out_dir": out_dir},
            "protocol": {"name": "socratic"},
            "tasks": {"source": "mathdial", "path": str(path.resolve()), "limit": limit},
            "models": {"human": HUMAN},
            "agents": {"teacher": {"model": "human"}, "student": {"model": "human"}}}


def human_records(dialogue: Dialogue, episode: int, run_id: str, batch: Batch, seed: int, agents: dict) -> list:
    """The dialogue's step records: each person's turn answers the ask the step before logged."""
    task = dialogue.task
    state = Tutoring(task=task, max_student_turns=1 + sum(t.speaker == "student" for t in dialogue.turns),
                     dialogue=(("student", task.attempt),))
    records = [step_record(batch, run_id, seed, agents, episode, START, 0, (), ask("guide", state,
                                                                                 *teacher_view(state)))]
    solved_at = None
    for i, turn in enumerate(dialogue.turns):
        asked = records[-1].asks[0]
        notes = {}
        if turn.speaker == "teacher":
            said = f"({turn.move}) {turn.text}" if turn.move else turn.text
            told = state.told_at or (state.teacher_turns + 1 if solved_at is None and mentions(turn.text, task.answer)
                                     else None)
            state = state.replace(dialogue=state.dialogue + (("teacher", said),),
                                  moves=state.moves + (turn.move or UNLABELLED,), told_at=told)
            notes, phase, then, view = {"move": turn.move or UNLABELLED}, "guide", "answer", student_view
        else:
            said = turn.text
            state = state.replace(dialogue=state.dialogue + (("student", said),))
            if solved_at is None and is_correct(said, task.answer):
                solved_at = state.student_turns
            phase, then, view = "answer", "guide", teacher_view
        reply = Reply(text=said, prompt_tokens=0, completion_tokens=0, finish_reason="stop", model="human",
                      model_version=0, latency_s=0.0)
        turns = (TurnRecord(**asked.__dict__, index=0, reply=reply, started=0.0, ended=0.0),)
        nxt = (Done(state=state, outcome=measured(state, solved_at), notes=notes) if i == len(dialogue.turns) - 1
               else ask(then, state, *view(state), notes=notes))
        records.append(step_record(batch, run_id, seed, agents, episode, phase, i + 1, turns, nxt))
    return records


def measured(state: Tutoring, solved_at: int | None) -> Outcome:
    metrics = {"student_turns": state.student_turns, "teacher_turns": state.teacher_turns}
    if solved_at is not None:
        metrics["success_at"] = solved_at
    if state.told_at is not None:
        metrics["telling_at"] = state.told_at
    solved = solved_at is not None
    return Outcome(solved=solved, score=float(solved), metrics=metrics)


def import_mathdial(path: str | Path, out_dir: str = "runs", name: str = "mathdial",
                    limit: int | None = None) -> tuple[Path, dict, list[str]]:
    """Write the run folder (whole, or nothing); returns it, its statistics, and the rows left out."""
    from academe.simulation.simulate import new_run_dir, plan

    path = resolve_task_path(path)
    dialogues, problems = read_mathdial(path)
    dialogues = dialogues[:limit]
    if not dialogues:
        raise ValueError(f"{path}: no row could be imported" + (f" ({problems[0]})" if problems else ""))
    config = parse_config(import_config(path, len(dialogues), name, out_dir, limit), "the import's config")
    checked = plan(config)
    batch = Batch(checked.protocol, checked.options, checked.cast, dict(enumerate(checked.tasks)))
    agents = {a.name: a for agents_ in checked.cast.values() for a in agents_}
    final = new_run_dir(config)
    records = [human_records(d, i, final.name, batch, config.run.seed, agents) for i, d in enumerate(dialogues)]
    stats = dialogue_stats(dialogues, [r[-1].outcome for r in records], problems)
    partial = final.with_name(f".{final.name}.partial")
    try:
        partial.mkdir(parents=True)
        write_config(partial, config)
        write_lineage(partial, Lineage(kind="import", source=str(path.resolve())))
        log = DialogueLog(partial)
        log.append([r for episode in records for r in episode])
        log.close()
        (partial / SUMMARY_FILE).write_text(json.dumps(stats, indent=2))
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final, stats, problems


def dialogue_stats(dialogues: list[Dialogue], outcomes: list[Outcome], problems: list[str]) -> dict:
    """Dialogues, turns, teacher moves by kind, the teachers' own verdicts, and success and telling
    as measured (with their @k curves)."""
    moves = Counter(t.move or UNLABELLED for d in dialogues for t in d.turns if t.speaker == "teacher")
    verdicts = Counter(d.self_correctness or "not given" for d in dialogues)
    summary = outcome_summary(outcomes)
    said_yes = [o for d, o in zip(dialogues, outcomes) if d.self_correctness in SELF_CORRECTNESS[:2]]
    return {
        "dialogues": len(dialogues),
        "rows_left_out": len(problems),
        "turns": {"teacher": sum(t.speaker == "teacher" for d in dialogues for t in d.turns),
                  "student": sum(t.speaker == "student" for d in dialogues for t in d.turns)},
        "mean_turns": round(sum(len(d.turns) for d in dialogues) / len(dialogues), 2),
        "merged_turns": sum(d.merged for d in dialogues),
        "teacher_moves": dict(moves.most_common()),
        "self_correctness": dict(verdicts.most_common()),
        "success": summary["solved"], "success_rate": summary["solve_rate"],
        "telling": sum("telling_at" in o.metrics for o in outcomes),
        "telling_rate": sum("telling_at" in o.metrics for o in outcomes) / len(outcomes),
        "success_where_teacher_said_solved": (sum(bool(o.solved) for o in said_yes), len(said_yes)),
        "at_k": summary["at_k"],
    }
