"""Socratic tutoring, after MathDial: the student attempts; if wrong, the teacher guides with a move
(focus, probing, telling, generic) and the student answers again, until the student states the right
answer or runs out of turns. Outcome metrics follow MathDial: success@k (solved within k student
turns) and telling@k (the teacher said the answer within its first k turns, before the student did).

A task may bring the student's attempt and profile (MathDial's rows: an incorrect solution and a
description of the student); the dialogue then opens with that attempt and the teacher speaks first.
"""

from __future__ import annotations

import re

from pydantic import Field

from academe.agents.records import Reply, Task
from academe.protocols.engine import (SFT, Done, EpisodeState, Options, Outcome, Phase, Protocol, ask, assistant, system,
                                      user)
from academe.protocols.grading import extract_answer, is_correct, mentions

MOVES = ("focus", "probing", "telling", "generic")
MOVE_TAG = re.compile(r"^\s*\(?\s*(focus|probing|telling|generic)\s*\)\s*[:\-]?\s*", re.IGNORECASE)


class TutoringOptions(Options):
    max_student_turns: int = Field(4, ge=1, le=50, description="student turns, the first attempt included")


class TutoringTask(Task):
    """A problem, and optionally the student who brings an attempt at it (MathDial)."""

    attempt: str | None = Field(None, description="the student's own (incorrect) solution, said before tutoring")
    profile: str | None = Field(None, description="who the student is, e.g. 'Mariana is a 7th grade student...'")


class Tutoring(EpisodeState):
    task: TutoringTask
    max_student_turns: int
    dialogue: tuple[tuple[str, str], ...] = ()  # (speaker, text), speaker "student" or "teacher"
    told_at: int | None = None  # teacher turn that first stated the answer
    moves: tuple[str, ...] = ()

    @property
    def student_turns(self) -> int:
        return sum(speaker == "student" for speaker, _ in self.dialogue)

    @property
    def teacher_turns(self) -> int:
        return len(self.moves)


def attempt_prompt(task: Task) -> str:
    return f"Solve this problem step by step. End with 'Answer: <number>'.\n\n{task.question}"


def student_view(s: Tutoring):
    """The student sees the problem, its own answers, and the teacher's words, without the move
    label: the label annotates the turn for the log and the metrics, it is not said to the student."""
    profile = [system(f"Play this student: {s.task.profile} You believe your attempt is right until you see why "
                      "it is not.")] if s.task.profile else []
    return profile + [user(attempt_prompt(s.task))] + [
        assistant(text) if speaker == "student" else user(without_move(text)) for speaker, text in s.dialogue
    ]


def without_move(text: str) -> str:
    return MOVE_TAG.sub("", text, count=1)


def teacher_view(s: Tutoring):
    """The teacher sees the problem and its answer, the student's words, and its own."""
    brief = (f"Problem: {s.task.question}\nCorrect answer: {s.task.answer}\nGuide the student with one short "
             "question; begin with the move in brackets, e.g. (probing). Do not give the answer away.")
    return [user(brief)] + [user(text) if speaker == "student" else assistant(text) for speaker, text in s.dialogue]


def start(task: Task, options: TutoringOptions):
    task = task if isinstance(task, TutoringTask) else TutoringTask.model_validate(task.model_dump())
    s = Tutoring(task=task, max_student_turns=options.max_student_turns)
    if task.attempt:  # the student's attempt is given: the teacher opens
        s = s.replace(dialogue=(("student", task.attempt),))
        return ask("guide", s, *teacher_view(s))
    return ask("attempt", s, user(attempt_prompt(task)))


def student_spoke(s: Tutoring, replies: tuple[Reply, ...]):
    (reply,) = replies
    s = s.replace(dialogue=s.dialogue + (("student", reply.text),))
    notes = {} if extract_answer(reply.text) is not None else {"parse": "no number in the student's reply"}
    if is_correct(reply.text, s.task.answer) or s.student_turns >= s.max_student_turns:
        return Done(state=s, outcome=outcome(s, solved=is_correct(reply.text, s.task.answer)), notes=notes)
    return ask("guide", s, *teacher_view(s), notes=notes)


def teacher_spoke(s: Tutoring, replies: tuple[Reply, ...]):
    (reply,) = replies
    tag = MOVE_TAG.match(reply.text)
    move = tag.group(1).lower() if tag else "generic"
    told = s.told_at or (s.teacher_turns + 1 if mentions(reply.text, s.task.answer) else None)
    s = s.replace(dialogue=s.dialogue + (("teacher", reply.text),), moves=s.moves + (move,), told_at=told)
    return ask("answer", s, *student_view(s), notes={"move": move})


def outcome(s: Tutoring, solved: bool) -> Outcome:
    metrics = {"student_turns": s.student_turns, "teacher_turns": s.teacher_turns}
    if solved:
        metrics["success_at"] = s.student_turns
    if s.told_at is not None:
        metrics["telling_at"] = s.told_at
    return Outcome(solved=solved, score=float(solved), rewards={"student": float(solved)}, metrics=metrics)


socratic = Protocol(
    name="socratic",
    description="Socratic tutoring (MathDial): a teacher guides a student to a word problem's answer",
    roles=("teacher", "student"),
    state=Tutoring,
    options=TutoringOptions,
    start=start,
    first=("attempt", "guide"),
    phases={
        "attempt": Phase("student", student_spoke, then=("guide", "<end>"), doc="first try, unaided"),
        "guide": Phase("teacher", teacher_spoke, then=("answer",), doc="one Socratic move"),
        "answer": Phase("student", student_spoke, then=("guide", "<end>"), doc="the student tries again"),
    },
    # the reply that solved it, as the target for the unaided problem (STaR-style rationalization)
    train=(SFT(role="student", phases=("attempt", "answer"), when="solved", turns="last", prompt="first"),),
)
