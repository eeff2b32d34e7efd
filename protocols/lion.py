"""Lion (Jiang et al., 2023: "Lion: Adversarial Distillation of Proprietary Large Language Models"):
a student learns from a teacher in a three-stage adversarial loop. Each round:

1. *imitation*: the teacher answers the train pool, and the student is fine-tuned on its answers;
2. *discrimination*: on the cache pool, teacher and student both answer and a referee scores the
   two answers 1-10, twice, with their positions swapped, the two scores averaged; an instruction
   is *hard* when the teacher's score beats the student's by ``hard_gap`` or more, *easy* otherwise;
3. *generation*: the teacher writes new hard instructions from hard ones (same domain and task
   type, similar length and difficulty) and as many new easy ones from easy ones (same domain,
   rarer topics); a new one whose ROUGE-L with a known one exceeds ``similarity`` is dropped; both
   pools grow.

It works with open instructions (no reference, a model referee) and with problems a grader can
judge: ``referee: grader`` then scores a right answer 10 and a wrong one 1, with no referee turn.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from academe.agents.records import Record, SFTExample, Task
from academe.protocols.answer import answer, prompt_for
from academe.protocols.engine import END, Answer, Ask, Done, EpisodeState, Next, Options, Outcome, Phase, Protocol, user
from academe.protocols.grading import grade
from academe.protocols.making import NearDuplicates, NotAProblem, keep_new, made_task
from academe.protocols.program import (Episodes, Evaluate, Evaluated, Program, ProgramState, RunEpisodes, Stage, Stop,
                                       Train, Trained)

_SCORES = re.compile(r"scores?\s*:\s*(\d+(?:\.\d+)?)\s*[,;/ ]\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_INSTRUCTION = re.compile(r"instruction\s*:\s*", re.IGNORECASE)


# ---- discrimination: teacher and student answer, a referee scores both, positions swapped ----


class CompareOptions(Options):
    referee: Literal["model", "grader"] = Field("model", description="grader: a right answer scores 10, a wrong one 1")


class Comparison(EpisodeState):
    by_grader: bool = False
    teacher: str = ""
    student: str = ""
    passes: tuple[tuple[float, float] | None, ...] = ()  # (teacher, student) per referee pass; None: no scores

    @property
    def gap(self) -> float | None:
        scored = [p for p in self.passes if p is not None]
        return sum(t - s for t, s in scored) / len(scored) if scored else None


def score_prompt(task: Task, first: str, second: str) -> str:
    return (f"Instruction: {task.question}\n\nAssistant 1:\n{first}\n\nAssistant 2:\n{second}\n\n"
            "Rate each assistant's answer from 1 to 10 for helpfulness, relevance and accuracy. "
            "Reply 'Scores: <assistant 1> <assistant 2>'.")


def parse_scores(text: str) -> tuple[float, float] | None:
    found = _SCORES.findall(text)
    return (float(found[-1][0]), float(found[-1][1])) if found else None


def begin_comparison(task: Task, options: CompareOptions):
    asked = (user(prompt_for(task)),)
    return Next(state=Comparison(task=task, by_grader=options.referee == "grader"), phase="answer",
                asks=(Ask(role="teacher", messages=asked), Ask(role="student", messages=asked)))


def both_answered(s: Comparison, answers: tuple[Answer, ...]):
    said = {a.role: a.text for a in answers}
    s = s.replace(teacher=said["teacher"], student=said["student"])
    if s.by_grader:
        return compared(s.replace(passes=((graded(s.task, s.teacher), graded(s.task, s.student)),)))
    return Next(state=s, phase="score", asks=(Ask(messages=(user(score_prompt(s.task, s.teacher, s.student)),)),
                                              Ask(messages=(user(score_prompt(s.task, s.student, s.teacher)),))))


def graded(task: Task, text: str) -> float:
    """The grader as referee: a right answer scores 10, a wrong one 1."""
    return 10.0 if grade(task, text) else 1.0


def referee_scored(s: Comparison, answers: tuple[Answer, ...]):
    first, swapped = (parse_scores(a.text) for a in answers)
    return compared(s.replace(passes=(first, swapped[::-1] if swapped else None)))


def compared(s: Comparison) -> Done:
    if s.gap is None:
        return Done(state=s, outcome=Outcome(), notes={"parse": "the referee gave no scores"})
    teacher = sum(p[0] for p in s.passes if p) / len([p for p in s.passes if p])
    student = sum(p[1] for p in s.passes if p) / len([p for p in s.passes if p])
    return Done(state=s, outcome=Outcome(score=s.gap, metrics={"teacher_score": teacher, "student_score": student,
                                                                "gap": s.gap}))


compare = Protocol(
    name="compare", description="teacher and student answer; a referee scores both, twice, positions swapped",
    roles=("teacher", "student", "referee"), state=Comparison, options=CompareOptions, start=begin_comparison,
    first=("answer",),
    phases={"answer": Phase(("teacher", "student"), both_answered, then=("score", END), doc="both answer"),
            "score": Phase("referee", referee_scored, then=(END,), doc="1-10 each, in both orders")},
)


# ---- generation: the teacher writes a new hard instruction from a hard one, an easy from an easy ----


class Exemplar(Task):
    """An instruction the student found hard or easy: what a new one is written after."""

    hardness: Literal["hard", "easy"]


class Writing(EpisodeState):
    task: Exemplar
    written: Task | None = None
    reason: str | None = None


def write_prompt(exemplar: Exemplar) -> str:
    how = ("in the same domain and of the same task type, of similar length and difficulty"
           if exemplar.hardness == "hard" else "in the same domain, but about a rarer topic")
    form = ("Problem: <the new problem>\nSolution: <its worked solution>\nAnswer: <number>"
            if exemplar.grader == "numeric" else "Instruction: <the new instruction>")
    return (f"Here is an instruction:\n\n{exemplar.question}\n\nWrite one new instruction {how}. "
            f"Reply exactly in this form:\n{form}")


def begin_writing(task: Exemplar, options: Options):
    return Next(state=Writing(task=task), phase="write", asks=(Ask(messages=(user(write_prompt(task)),)),))


def teacher_wrote(s: Writing, answers: tuple[Answer, ...]):
    (answer,) = answers
    try:
        if s.task.grader in ("numeric", "exact"):
            written = made_task(answer.text, task_id=f"{s.task.id}>new", grader=s.task.grader)
        else:
            written = open_instruction(answer.text, task_id=f"{s.task.id}>new", grader=s.task.grader)
    except NotAProblem as exc:
        return Done(state=s.replace(reason=exc.reason), outcome=Outcome(metrics={"written": 0.0}),
                    notes={"parse": str(exc)})
    return Done(state=s.replace(written=written), outcome=Outcome(metrics={"written": 1.0}))


def open_instruction(text: str, task_id: str, grader: str) -> Task:
    marker = _INSTRUCTION.search(text)
    question = (text[marker.end():] if marker else text).strip()
    if len(question) < 10:
        raise NotAProblem("the instruction is too short", f"{len(question)} characters")
    return Task(id=task_id, question=question, grader=grader)


write_instruction = Protocol(
    name="write-instruction", description="a teacher writes a new instruction after a hard or an easy one",
    roles=("teacher",), state=Writing, task=Exemplar, start=begin_writing, first=("write",),
    phases={"write": Phase("teacher", teacher_wrote, then=(END,), doc="one new instruction")},
)


# ---- the program ----


class LionOptions(Options):
    rounds: int = Field(3, ge=1, le=1000)
    hard_gap: float = Field(1.0, description="hard when teacher score - student score is at least this")
    new_per_round: int = Field(16, ge=2, description="new instructions per round at most: up to half from hard "
                               "instructions, up to half from easy ones")
    similarity: float = Field(0.7, gt=0, le=1, description="ROUGE-L above which a new instruction is a duplicate")
    referee: Literal["model", "grader"] = "model"


class RoundReport(Record):
    round: int
    train: int = 0
    cache: int = 0
    imitation: Trained | None = None
    accuracy: float | None = None  # the student's held-out accuracy after imitation
    hard: int | None = None  # None: not discriminated (the last round ends after imitation)
    easy: int | None = None
    unscored: int | None = None
    mean_gap: float | None = None
    new_hard: int | None = None
    new_easy: int | None = None
    dropped: dict[str, int] = Field(default_factory=dict)


class Lion(ProgramState):
    options: LionOptions
    train: tuple[Task, ...]
    cache: tuple[Task, ...]
    answers: dict[str, str] = Field(default_factory=dict)  # the teacher's answer to each train instruction
    reserved: tuple[str, ...] = ()  # held-out questions
    baseline: float | None = None
    report: RoundReport = RoundReport(round=0)
    reports: tuple[RoundReport, ...] = ()


def start(tasks: tuple[Task, ...], held_out: tuple[Task, ...], options: LionOptions):
    s = Lion(options=options, train=tasks, cache=tasks, reserved=tuple(t.question for t in held_out))
    return Evaluate(state=s, stage="measured_base", role="student", protocol="answer")


def measured_base(s: Lion, result: Evaluated):
    return imitate(s.replace(baseline=result.accuracy))


def imitate(s: Lion):
    s = s.replace(report=s.report.replace(train=len(s.train), cache=len(s.cache)))
    unanswered = tuple(t for t in s.train if t.id not in s.answers)
    if not unanswered:
        return fine_tune(s)
    return RunEpisodes(state=s, stage="teacher_answered", protocol="answer", tasks=unanswered,
                       cast={"student": "teacher"})


def teacher_answered(s: Lion, result: Episodes):
    answers = {e.task.id: e.state.reply for e in result.episodes if e.outcome.error is None}
    return fine_tune(s.replace(answers={**s.answers, **answers}))


def fine_tune(s: Lion):
    data = tuple(SFTExample(messages=(user(prompt_for(t)),), target=s.answers[t.id]) for t in s.train
                 if t.id in s.answers)
    return Train(state=s, stage="imitated", role="student", sft=data)


def imitated(s: Lion, result: Trained):
    s = s.replace(report=s.report.replace(imitation=result))
    return Evaluate(state=s, stage="measured", role="student", protocol="answer")


def measured(s: Lion, result: Evaluated):
    s = s.replace(report=s.report.replace(accuracy=result.accuracy))
    if s.round + 1 >= s.options.rounds:
        s = s.replace(round=s.round + 1, reports=s.reports + (s.report,))
        return Stop(state=s, summary={"baseline": s.baseline, "accuracy": [r.accuracy for r in s.reports],
                                      "rounds": [r.model_dump(mode="json", exclude={"imitation"}) for r in s.reports]})
    return RunEpisodes(state=s, stage="discriminated", protocol="compare", tasks=s.cache,
                       options={"referee": s.options.referee})


def discriminated(s: Lion, result: Episodes):
    gaps = {e.task.id: e.state.gap for e in result.episodes if e.outcome.error is None}
    hard = [t for t in s.cache if gaps.get(t.id) is not None and gaps[t.id] >= s.options.hard_gap]
    easy = [t for t in s.cache if gaps.get(t.id) is not None and gaps[t.id] < s.options.hard_gap]
    scored = [g for g in gaps.values() if g is not None]
    s = s.replace(report=s.report.replace(hard=len(hard), easy=len(easy), unscored=len(s.cache) - len(scored),
                                          mean_gap=sum(scored) / len(scored) if scored else None))
    half = s.options.new_per_round // 2
    exemplars = tuple(Exemplar(**t.base().model_dump(), hardness="hard") for t in hard[:half]) + tuple(
        Exemplar(**t.base().model_dump(), hardness="easy") for t in easy[:half])
    if not exemplars:
        return next_round(s.replace(report=s.report.replace(new_hard=0, new_easy=0)), ())
    return RunEpisodes(state=s, stage="generated", protocol="write-instruction", tasks=exemplars)


def generated(s: Lion, result: Episodes):
    known = NearDuplicates([t.question for t in s.cache] + list(s.reserved), s.options.similarity,
                           same_numbers=True, measure="rouge-l")
    kept, dropped = keep_new(result.episodes, known, s.reserved, s.round, written=lambda e: e.state.written,
                             name=lambda e: f"r{s.round}-{e.task.hardness}-e{e.episode}")
    new = [task for task, _ in kept]
    counts = {kind: sum(e.task.hardness == kind for _, e in kept) for kind in ("hard", "easy")}
    s = s.replace(report=s.report.replace(new_hard=counts["hard"], new_easy=counts["easy"], dropped=dropped))
    return next_round(s, tuple(new))


def next_round(s: Lion, new: tuple[Task, ...]):
    s = s.replace(round=s.round + 1, train=s.train + new, cache=s.cache + new, reports=s.reports + (s.report,),
                  report=RoundReport(round=s.round + 1))
    return imitate(s)


lion = Program(
    name="lion",
    description="Lion: imitation, discrimination (a referee finds hard instructions), generation",
    roles=("teacher", "student", "referee"), state=Lion, options=LionOptions, start=start, first=("measured_base",),
    protocols={p.name: p for p in (answer, compare, write_instruction)}, trains={"student": "sft"},
    stages={
        "measured_base": Stage(measured_base, then=("teacher_answered", "imitated"), doc="held-out, before"),
        "teacher_answered": Stage(teacher_answered, then=("imitated",), doc="the teacher's answers"),
        "imitated": Stage(imitated, then=("measured",), doc="SFT on the teacher's answers"),
        "measured": Stage(measured, then=("discriminated", END), doc="held-out accuracy"),
        "discriminated": Stage(discriminated, then=("generated", "teacher_answered", "imitated"),
                               doc="hard and easy instructions"),
        "generated": Stage(generated, then=("teacher_answered", "imitated"), doc="new hard and easy instructions"),
    },
)
