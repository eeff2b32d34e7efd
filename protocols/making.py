"""Tasks written by agents: the make-problem protocol (a teacher turns a failed attempt into a new
problem), parsing a reply into a problem with its reference answer and worked solution, and
refusing near-duplicates of what a pool already holds (rapidfuzz's normalised Indel similarity).
Socratic-Zero and LLM2LLM both make their new problems this way."""

from __future__ import annotations

import re
from typing import Callable, Iterable, Literal, Sequence

from rapidfuzz import fuzz, process, utils
from rapidfuzz.distance import LCSseq

from academe.agents.records import Provenance, Task
from academe.protocols.engine import END, Answer, Ask, Done, EpisodeState, Next, Options, Outcome, Phase, Protocol, user
from academe.protocols.grading import answer_text, check_task, numbers
from academe.protocols.program import EpisodeResult

_PROBLEM = re.compile(r"problem\s*:\s*", re.IGNORECASE)
_SOLUTION = re.compile(r"(?:^|\n)\s*solution\s*:\s*", re.IGNORECASE)
_ANSWER = re.compile(r"(?:^|\n)\s*\**\s*answer\s*\**\s*[:=]\s*(.+)", re.IGNORECASE)
MIN_QUESTION_CHARS = 15


class NotAProblem(ValueError):
    """A reply that does not hold a usable problem: ``reason`` in a few words (to count reasons by),
    the message with the details."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def parse_problem(text: str, numeric: bool = True) -> tuple[str, str, str | None]:
    """``(question, answer, worked solution or None)`` from a reply of the form
    "Problem: ... [Solution: ...] Answer: <answer>".

    The answer is the last "Answer:" line; with ``numeric``, the number it gives, as written.
    """
    found = list(_ANSWER.finditer(text))
    if not found:
        raise NotAProblem("no 'Answer: ...' line")
    last = found[-1]
    stated = last.group(1).strip()
    answer = answer_text(f"Answer: {stated}") if numeric else stated
    if not answer:
        raise NotAProblem("the answer is not a number", repr(stated[:40]))
    body = text[: last.start()]
    worked = _SOLUTION.search(body)
    solution = f"{body[worked.end():].strip()}\nAnswer: {answer}" if worked else None
    body = body[: worked.start()] if worked else body
    marker = _PROBLEM.search(body)
    question = (body[marker.end():] if marker else body).strip()
    if len(question) < MIN_QUESTION_CHARS:
        raise NotAProblem("the problem text is too short", f"{len(question)} characters")
    return question, answer, solution


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 of two texts: their longest common subsequence of words, over both lengths."""
    x, y = a.lower().split(), b.lower().split()
    return 2 * LCSseq.similarity(x, y) / (len(x) + len(y)) if x and y else 0.0


class NearDuplicates:
    """Questions seen so far; ``match`` finds one at least ``threshold`` similar (0..1) to a new one,
    by character similarity (``ratio``: rapidfuzz's normalised Indel) or ``rouge-l`` (word LCS F1).

    With ``same_numbers``, a similar question counts only if it also has the same numbers: two
    word problems that differ only in their numbers are different problems.
    """

    def __init__(self, questions: Iterable[str], threshold: float, same_numbers: bool = False,
                 measure: Literal["ratio", "rouge-l"] = "ratio"):
        self.threshold, self.same_numbers, self.measure = threshold, same_numbers, measure
        self.questions: list[str] = []
        self.numbers: list[list] = []
        for question in questions:
            self.add(question)

    def match(self, question: str) -> str | None:
        if self.measure == "rouge-l":
            scores = ((q, rouge_l(question, q), i) for i, q in enumerate(self.questions))
            similar = [hit for hit in scores if hit[1] > self.threshold]
        else:
            similar = process.extract(question, self.questions, scorer=fuzz.ratio, processor=utils.default_process,
                                      score_cutoff=100 * self.threshold, limit=None)
        mine = sorted(numbers(question))
        for found, _, index in similar:
            if not self.same_numbers or self.numbers[index] == mine:
                return found
        return None

    def add(self, question: str) -> None:
        self.questions.append(question)
        self.numbers.append(sorted(numbers(question)))


def keep_new(episodes: Sequence[EpisodeResult], known: NearDuplicates, reserved: Sequence[str], round: int,
             written: Callable[[EpisodeResult], Task | None], name: Callable[[EpisodeResult], str],
             ) -> tuple[list[tuple[Task, EpisodeResult]], dict[str, int]]:
    """The tasks the episodes wrote that copy no known or ``reserved`` (held-out) one, each renamed
    ``name(episode)`` and stamped with its provenance, with the episode that wrote it; and how many
    were dropped, by reason."""
    kept, dropped = [], {}
    for e in episodes:
        task, reason = written(e), e.state.reason or "the episode failed"
        if task is not None and (twin := known.match(task.question)) is not None:
            task, reason = None, "near-duplicate of a " + ("held-out task" if twin in reserved else "known task")
        if task is None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        known.add(task.question)
        turn = e.turns[0]
        origin = Provenance(round=round, parent=e.task.id, episode=e.episode, agent=turn.agent, model=turn.reply.model,
                            model_version=turn.reply.model_version)
        kept.append((task.replace(id=name(e), origin=origin), e))
    return kept, dropped


def made_task(text: str, task_id: str, grader: str = "numeric") -> Task:
    """The task a reply writes, checked against its grader; NotAProblem if there is none."""
    question, answer, solution = parse_problem(text, numeric=grader == "numeric")
    task = Task(id=task_id, question=question, answer=answer, solution=solution, grader=grader)
    try:
        check_task(task)
    except ValueError as exc:
        raise NotAProblem("the grader cannot use its answer", str(exc)) from None
    return task


# ---- the make-problem protocol ----


Difficulty = Literal["easier", "same", "harder"]
ASKED_DIFFICULTY = {"easier": "a little easier than this one", "same": "at about the same difficulty",
                     "harder": "a little harder than this one"}


class Failure(Task):
    """A problem the solver got wrong, with one of its wrong attempts, and how hard the new
    problem made from it should be (a curriculum's choice)."""

    attempt: str
    difficulty: Difficulty = "same"


class Making(EpisodeState):
    task: Failure
    made: Task | None = None
    reason: str | None = None


def make_prompt(failure: Failure) -> str:
    return (f"A student got this problem wrong.\n\nProblem: {failure.question}\nCorrect answer: {failure.answer}\n"
            f"The student's attempt:\n<attempt>\n{failure.attempt}\n</attempt>\n\n"
            f"Write one new problem that practises what the student got wrong, {ASKED_DIFFICULTY[failure.difficulty]}, "
            "and its answer. Reply exactly in this form:\nProblem: <the new problem>\nSolution: <its worked solution>\n"
            "Answer: <number>")


def begin_making(task: Failure, options: Options):
    return Next(state=Making(task=task), phase="write", asks=(Ask(messages=(user(make_prompt(task)),)),))


def teacher_wrote(s: Making, answers: tuple[Answer, ...]):
    (answer,) = answers
    try:
        made = made_task(answer.text, task_id=f"{s.task.id}>new", grader=s.task.grader)
    except NotAProblem as exc:
        return Done(state=s.replace(reason=exc.reason), outcome=Outcome(metrics={"made": 0.0}), notes={"parse": str(exc)})
    return Done(state=s.replace(made=made), outcome=Outcome(metrics={"made": 1.0}))


make_problem = Protocol(
    name="make-problem",
    description="a teacher turns a failed attempt into a new problem with its answer",
    roles=("teacher",), state=Making, task=Failure, start=begin_making, first=("write",),
    phases={"write": Phase("teacher", teacher_wrote, then=(END,), doc="'Problem: ... Answer: ...'")},
)
