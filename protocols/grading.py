"""Grading free-text replies against a task's reference. Model output is parsed, never evaluated.

Numbers are compared by value ("1,000" equals "1000.0") but always kept and shown as they were
written: nothing here turns a number back into text, so "6000" never becomes "6E+3".
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Callable

from academe.agents.imports import import_function
from academe.agents.records import Task

# A number as people write it: optional sign, thousands separators, decimals ("-1,234.50").
_NUMBER = r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?"
NUMBER = re.compile(rf"(?<![\w.])(?:{_NUMBER})")
# Explicit answer markers, strongest first: GSM8K's "#### 42", then "Answer: 42", "answer is 42".
MARKERS = (
    re.compile(rf"####\s*\$?\s*({_NUMBER})"),
    re.compile(rf"answer\s*(?:is|:|=)\s*\**\s*\$?\s*({_NUMBER})", re.IGNORECASE),
)
CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations "<<48/2=24>>"
_TEXT_ANSWER = re.compile(r"answer\s*(?:is|:|=)\s*(.+)", re.IGNORECASE)

GRADERS = ("numeric", "exact", "none")


def to_number(text: str) -> Decimal | None:
    """The value of a number as written ("1,234.50"); ``None`` if it is not one."""
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def number_texts(text: str) -> list[str]:
    """Every number in the text as written, in order (calculator annotations removed)."""
    return NUMBER.findall(CALCULATOR.sub("", text))


def numbers(text: str) -> list[Decimal]:
    """The values of every number in the text, in order."""
    found = (to_number(m) for m in number_texts(text))
    return [n for n in found if n is not None]


def answer_text(text: str) -> str | None:
    """The number a reply gives as its final answer, as written: a marked answer, else the last number."""
    for marker in MARKERS:
        marked = marker.findall(text)
        if marked:
            return marked[-1]
    found = number_texts(text)
    return found[-1] if found else None


def extract_answer(text: str) -> Decimal | None:
    """The value of the reply's final answer (see ``answer_text``)."""
    written = answer_text(text)
    return to_number(written) if written is not None else None


def is_correct(text: str, answer: str | None) -> bool:
    given, expected = extract_answer(text), to_number(answer) if answer is not None else None
    return given is not None and expected is not None and given == expected


def mentions(text: str, answer: str | None) -> bool:
    """Whether the number ``answer`` appears anywhere in the text (a teacher telling it)."""
    expected = to_number(answer) if answer is not None else None
    return expected is not None and expected in numbers(text)


def _normalised(text: str) -> str:
    return " ".join(text.casefold().strip().rstrip(".!").split())


def exact(text: str, answer: str | None) -> bool:
    """The reply's stated answer (after "Answer:", else the whole reply) equals the reference,
    ignoring case, spacing and a final full stop."""
    if answer is None:
        return False
    stated = _TEXT_ANSWER.findall(text)
    return _normalised(stated[-1] if stated else text) == _normalised(answer)


@lru_cache(maxsize=64)
def grader(name: str) -> Callable[[str, Task], bool | None]:
    """The grading function a task set names: built-in, or ``module:function`` of (text, task)."""
    if name == "numeric":
        return lambda text, task: is_correct(text, task.answer) if task.answer is not None else None
    if name == "exact":
        return lambda text, task: exact(text, task.answer) if task.answer is not None else None
    if name == "none":
        return lambda text, task: None
    if ":" not in name:
        raise ValueError(f"unknown grader {name!r}; use one of {', '.join(GRADERS)} or 'package.module:function'")
    return import_function(name, "grader")


def grade(task: Task, text: str) -> bool | None:
    """Whether ``text`` answers ``task`` correctly; ``None`` where the task has no reference to judge by."""
    return grader(task.grader)(text, task)


def check_task(task: Task) -> None:
    """Refuse a task its grader cannot judge (a numeric grader needs a numeric reference)."""
    grader(task.grader)
    if task.grader in ("numeric", "exact") and task.answer is None:
        raise ValueError(f"task {task.id!r} has no reference answer, which the {task.grader} grader needs; give it "
                         "an 'answer', or use grader 'none' for open instructions that a judge scores")
    if task.grader == "numeric" and to_number(task.answer) is None:
        raise ValueError(f"task {task.id!r}: the numeric grader needs a number as the answer, got {task.answer!r}")
