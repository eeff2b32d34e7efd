"""Tasks written by agents: parse a reply into a problem with its reference answer, and refuse
near-duplicates of what the pool already holds (rapidfuzz's normalised Indel similarity)."""

from __future__ import annotations

import re
from typing import Iterable

from rapidfuzz import fuzz, process, utils

from academe.agents.records import Task
from academe.protocols.grading import answer_text, check_task, numbers

_PROBLEM = re.compile(r"problem\s*:\s*", re.IGNORECASE)
_ANSWER = re.compile(r"(?:^|\n)\s*\**\s*answer\s*\**\s*[:=]\s*(.+)", re.IGNORECASE)
MIN_QUESTION_CHARS = 15


class NotAProblem(ValueError):
    """A reply that does not hold a usable problem: ``reason`` in a few words (to count reasons by),
    the message with the details."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def parse_problem(text: str, numeric: bool = True) -> tuple[str, str]:
    """``(question, answer)`` from a reply of the form "Problem: ... Answer: <answer>".

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
    marker = _PROBLEM.search(body)
    question = (body[marker.end():] if marker else body).strip()
    if len(question) < MIN_QUESTION_CHARS:
        raise NotAProblem("the problem text is too short", f"{len(question)} characters")
    return question, answer


class NearDuplicates:
    """Questions seen so far; ``match`` finds one at least ``threshold`` similar (0..1) to a new one.

    With ``same_numbers``, a similar question counts only if it also has the same numbers: two
    word problems that differ only in their numbers are different problems.
    """

    def __init__(self, questions: Iterable[str], threshold: float, same_numbers: bool = False):
        self.threshold, self.same_numbers = threshold, same_numbers
        self.questions: list[str] = []
        self.numbers: list[list] = []
        for question in questions:
            self.add(question)

    def match(self, question: str) -> str | None:
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


def made_task(text: str, task_id: str, grader: str = "numeric") -> Task:
    """The task a reply writes, checked against its grader; NotAProblem if there is none."""
    question, answer = parse_problem(text, numeric=grader == "numeric")
    task = Task(id=task_id, question=question, answer=answer, grader=grader)
    try:
        check_task(task)
    except ValueError as exc:
        raise NotAProblem("the grader cannot use its answer", str(exc)) from None
    return task
