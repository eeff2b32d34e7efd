"""One turn: an agent answers a task, and the task's own grader judges the answer where it can.

The building block of programs that need plain answers: a student's answers to its training items
(LLM2LLM), a teacher's answers to instructions (Lion).
"""

from __future__ import annotations

from academe.agents.records import Task
from academe.protocols.engine import END, Answer, Done, EpisodeState, Outcome, Phase, Protocol, ask, user
from academe.protocols.grading import grade
from academe.protocols.socratic import attempt_prompt


class Answered(EpisodeState):
    reply: str = ""


def prompt_for(task: Task) -> str:
    """A numeric task asks for a worked answer ending in 'Answer: <number>'; any other, the task itself."""
    return attempt_prompt(task) if task.grader == "numeric" else task.question


def start(task: Task, options):
    return ask("answer", Answered(task=task), user(prompt_for(task)))


def answered(s: Answered, answers: tuple[Answer, ...]):
    (answer,) = answers
    verdict = grade(s.task, answer.text)
    return Done(state=s.replace(reply=answer.text),
                outcome=Outcome(solved=verdict, score=None if verdict is None else float(verdict)))


answer = Protocol(
    name="answer", description="one agent answers a task; its grader judges the answer where it can",
    roles=("student",), state=Answered, start=start, first=("answer",),
    phases={"answer": Phase("student", answered, then=(END,), doc="one reply")},
)
