"""MathDial's tutoring dialogues (Macina et al., 2023, "MathDial: A Dialogue Tutoring Dataset with
Rich Pedagogical Properties Grounded in Math Reasoning Problems") read as academe tasks and turns.

Each row is a word problem, a student's incorrect solution and profile, and a real conversation:
turns joined by ``|EOM|``, a teacher turn ``Teacher: (move)text``. Rows are messy in known ways
(a student turn headed by the student's first name, a move or a rating that is null, numbers
written as strings, two turns of one speaker in a row): those are read as meant; a row that cannot
be read is reported with its line and why, and the others are kept. The problem with the student's
attempt and profile is a ``TutoringTask``: Socratic tutoring then opens with that attempt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from academe.agents.records import Prompt
from academe.protocols.grading import number_texts
from academe.protocols.socratic import MOVES, TutoringTask
from academe.protocols.tasks import TaskFileError, resolve_task_path

SPEAKER = re.compile(r"^\s*([A-Za-z][\w .'-]{0,40}?)\s*:\s?")
MOVE = re.compile(r"^\s*\((\w*)\)\s*")
SELF_CORRECTNESS = ("Yes", "Yes, but I had to reveal the answer", "No")


class RowError(ValueError):
    """A row that cannot be imported; the message says why."""


@dataclass(frozen=True)
class HumanTurn:
    speaker: str  # "teacher" or "student"
    text: str
    move: str | None = None  # a teacher's move; None where the row has no (or an unknown) label


@dataclass(frozen=True)
class Dialogue:
    line: int
    task: TutoringTask
    turns: tuple[HumanTurn, ...]
    self_correctness: str | None  # the teacher's own verdict, as MathDial asked it
    merged: int  # turns joined to the one before (the same speaker twice in a row)


def final_answer(ground_truth: str) -> str:
    """The reference answer: the number on the worked solution's last line (else its last number)."""
    lines = [line for line in str(ground_truth).strip().splitlines() if line.strip()]
    for text in (lines[-1] if lines else "", str(ground_truth)):
        found = number_texts(text)
        if found:
            return found[-1]
    raise RowError("ground_truth has no final number")


def speaker_of(turn: str, student_name: str) -> tuple[str, str]:
    found = SPEAKER.match(turn)
    if found is None:
        raise RowError(f"turn {turn[:40]!r} names no speaker ('Teacher:' or 'Student:')")
    who, text = found.group(1).strip(), turn[found.end():].strip()
    if who.lower() == "teacher":
        return "teacher", text
    if who.lower() == "student" or who.lower() == student_name.lower():
        return "student", text
    raise RowError(f"turn {turn[:40]!r} is spoken by {who!r}: neither Teacher, Student nor the student's "
                   f"name {student_name!r}")


def parse_dialogue(row: object, line: int) -> Dialogue:
    if not isinstance(row, dict):
        raise RowError(f"a row is a JSON object, got {type(row).__name__}")
    missing = [k for k in ("qid", "question", "ground_truth", "student_incorrect_solution", "conversation")
               if row.get(k) in (None, "")]
    if missing:
        raise RowError(f"missing or empty: {', '.join(missing)}")
    profile = str(row.get("student_profile") or "").strip() or None
    name = (profile or "Student").split()[0].strip(",.")
    turns: list[HumanTurn] = []
    merged = 0
    for part in str(row["conversation"]).split("|EOM|"):
        if not part.strip():
            continue
        speaker, text = speaker_of(part, name)
        move = None
        if speaker == "teacher":
            tag = MOVE.match(text)
            if tag:
                text = text[tag.end():].strip()
                move = tag.group(1).lower() if tag.group(1).lower() in MOVES else None
        if turns and turns[-1].speaker == speaker:
            previous = turns.pop()
            turns.append(HumanTurn(speaker, f"{previous.text}\n{text}", previous.move or move))
            merged += 1
        else:
            turns.append(HumanTurn(speaker, text, move))
    if not turns:
        raise RowError("the conversation has no turns")
    if turns[0].speaker != "teacher":
        raise RowError("the conversation opens with the student; MathDial's teacher speaks first")
    task = TutoringTask(id=f"mathdial-{row['qid']}", question=str(row["question"]).strip(),
                        answer=final_answer(row["ground_truth"]), solution=str(row["ground_truth"]).strip(),
                        attempt=str(row["student_incorrect_solution"]).strip(), profile=profile)
    verdict = row.get("self-correctness")
    verdict = None if verdict in (None, "", "None", "null") else str(verdict).strip()
    return Dialogue(line, task, tuple(turns), verdict, merged)


def read_mathdial(path: str | Path) -> tuple[list[Dialogue], list[str]]:
    """Every readable row's dialogue, and for each other row 'line N: why'."""
    path = resolve_task_path(path)
    if not path.is_file():
        raise TaskFileError(f"MathDial file {str(path)!r} does not exist")
    dialogues, problems = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                dialogues.append(parse_dialogue(json.loads(text), number))
            except json.JSONDecodeError as exc:
                problems.append(f"line {number}: not JSON ({exc.msg})")
            except (RowError, ValueError) as exc:
                problems.append(f"line {number}: {str(exc).splitlines()[0]}")
    return dialogues, problems


def load_mathdial_tasks(path: str | Path) -> list[TutoringTask]:
    """The problems of a MathDial file, each with its student's attempt and profile (tasks.source: mathdial)."""
    dialogues, problems = read_mathdial(path)
    if not dialogues:
        raise TaskFileError(f"{path}: no row could be read ({problems[0] if problems else 'the file is empty'})")
    return [d.task for d in dialogues]


def human(prompt: Prompt) -> str:
    """The agent an imported dialogue names for its people: it cannot be asked to speak."""
    raise ValueError("a person spoke this turn in the imported dialogue; fork it with a model agent "
                     "(academe fork ... --agent teacher=<agent>) to have this turn said again")
