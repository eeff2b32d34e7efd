"""Learning by teaching (Ning et al., 2024: "Can LLMs Learn by Teaching for Better Reasoning?").

M1, one episode per teaching problem: the teacher writes several rationales, each ending in an
answer; each rationale is given to the students as a one-shot example, and the students take an
exam of similar problems; a rationale's LbT score is the share of exam answers right. The answer
is then selected by the maximum, or by the sum, of the LbT scores of the rationales that gave it;
the outcome puts both beside majority vote over the same rationales and beside the true answer.
Several students take each exam in parallel (the paper finds diverse students help).

M2, the program: after each round of M1 episodes the teacher is trained by DPO on pairs of its
rationales ranked by correctness, then LbT score, and measured on held-out problems.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from pydantic import Field

from academe.agents.records import PreferencePair, Record, Task
from academe.protocols.answer import answer, prompt_for
from academe.protocols.engine import END, Answer, Ask, Done, EpisodeState, Next, Options, Outcome, Phase, Protocol
from academe.protocols.engine import assistant, user
from academe.protocols.grading import extract_answer, grade, to_number
from academe.protocols.program import (Episodes, EpisodeResult, Evaluate, Evaluated, Program, ProgramState,
                                       RunEpisodes, Stage, Stop, Train, Trained)


class Lesson(Task):
    """A teaching problem and the exam of similar problems its rationales are tested on."""

    exam: tuple[Task, ...] = Field(min_length=1)


class TeachingOptions(Options):
    rationales: int = Field(4, ge=1, le=64, description="rationales the teacher writes per teaching problem")


class Teaching(EpisodeState):
    task: Lesson
    rationales: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()  # LbT score of each rationale: the share of its exam answered right
    by_student: dict[str, tuple[float, ...]] = Field(default_factory=dict)  # agent -> its share per rationale

    @property
    def answers(self) -> tuple[Decimal | None, ...]:
        return tuple(extract_answer(r) for r in self.rationales)


def begin_teaching(task: Lesson, options: TeachingOptions):
    teach = Ask(messages=(user(prompt_for(task)),))
    return Next(state=Teaching(task=task), phase="teach", asks=(teach,) * options.rationales)


def exam_asks(s: Teaching) -> tuple[Ask, ...]:
    """Every rationale as a one-shot example before every exam problem, for every student."""
    return tuple(Ask(messages=(user(prompt_for(s.task)), assistant(r), user(prompt_for(problem))))
                 for r in s.rationales for problem in s.task.exam)


def teacher_taught(s: Teaching, answers: tuple[Answer, ...]):
    s = s.replace(rationales=tuple(a.text for a in answers))
    return Next(state=s, phase="exam", asks=exam_asks(s))


def students_examined(s: Teaching, answers: tuple[Answer, ...]):
    exam = len(s.task.exam)
    per_ask = len(answers) // (len(s.rationales) * exam)  # every student answered each ask
    right: dict[str, list[int]] = {}
    for i, a in enumerate(answers):
        rationale = i // (exam * per_ask)
        problem = s.task.exam[(i // per_ask) % exam]
        right.setdefault(a.agent, [0] * len(s.rationales))[rationale] += grade(problem, a.text) is True
    s = s.replace(by_student={agent: tuple(n / exam for n in counts) for agent, counts in right.items()},
                  scores=tuple(sum(counts[r] for counts in right.values()) / (exam * len(right))
                               for r in range(len(s.rationales))))
    return Done(state=s, outcome=selection_outcome(s))


def select(answers, scores, by: str) -> Decimal | None:
    """The answer picked by ``max`` LbT score, by ``sum`` of LbT scores, or by ``majority`` vote;
    ties go to the answer given first."""
    given = [(a, sc) for a, sc in zip(answers, scores) if a is not None]
    if not given:
        return None
    order = list(dict.fromkeys(a for a, _ in given))
    if by == "max":
        return max(given, key=lambda pair: pair[1])[0]
    weight = Counter()
    for a, sc in given:
        weight[a] += sc if by == "sum" else 1
    return max(order, key=lambda a: weight[a])


def selection_outcome(s: Teaching) -> Outcome:
    truth = to_number(s.task.answer) if s.task.answer is not None else None
    right = {by: float(select(s.answers, s.scores, by) == truth) for by in ("max", "sum", "majority")}
    metrics = {"lbt_max": right["max"], "lbt_sum": right["sum"], "majority": right["majority"],
               "any_right": float(truth in s.answers), "mean_lbt_score": sum(s.scores) / len(s.scores)}
    return Outcome(solved=bool(right["sum"]), score=right["sum"], metrics=metrics)


teach_and_exam = Protocol(
    name="teach-and-exam",
    description="LbT M1: the teacher's rationales are scored by how well students taught with them do on an exam",
    roles=("teacher", "student"), state=Teaching, options=TeachingOptions, task=Lesson, start=begin_teaching,
    first=("teach",),
    phases={"teach": Phase("teacher", teacher_taught, then=("exam",), doc="rationales, sampled"),
            "exam": Phase("student", students_examined, then=(END,), doc="one-shot exam per rationale")},
)


# ---- M2: the teacher learns from its rationales, ranked by correctness and LbT score ----


class LearningOptions(Options):
    rounds: int = Field(2, ge=1, le=1000)
    rationales: int = Field(4, ge=2, le=64)
    exam_size: int = Field(3, ge=1, le=64, description="similar problems in each teaching problem's exam")
    train_teacher: bool = Field(True, description="M2: DPO for the teacher after each round (false: M1 only)")


class RoundReport(Record):
    round: int
    lessons: int = 0
    lbt_max: float | None = None  # share of teaching problems whose selected answer is right
    lbt_sum: float | None = None
    majority: float | None = None
    any_right: float | None = None
    pairs: int = 0
    trained: Trained | None = None
    accuracy: float | None = None  # the teacher's held-out accuracy after the round


class LearningByTeaching(ProgramState):
    options: LearningOptions
    lessons: tuple[Lesson, ...]
    baseline: float | None = None
    report: RoundReport = RoundReport(round=0)
    reports: tuple[RoundReport, ...] = ()


def lessons_of(tasks: tuple[Task, ...], exam_size: int) -> tuple[Lesson, ...]:
    """Each task a teaching problem; the exam is the next tasks of the pool (a pool of similar problems)."""
    return tuple(Lesson(**t.base().model_dump(), exam=tuple(tasks[(i + j) % len(tasks)].base()
                                                          for j in range(1, exam_size + 1)))
                 for i, t in enumerate(tasks))


def ranked_pairs(e: EpisodeResult) -> list[PreferencePair]:
    """(better, worse) rationales of one teaching problem: right before wrong, then higher LbT score."""
    s: Teaching = e.state
    truth = to_number(s.task.answer)
    key = [(answer == truth, score) for answer, score in zip(s.answers, s.scores)]
    asked = next(t.asked for t in e.turns if t.phase == "teach")
    return [PreferencePair(messages=asked, chosen=s.rationales[i], rejected=s.rationales[j], task=s.task.id)
            for i in range(len(key)) for j in range(len(key))
            if key[i] > key[j] and s.rationales[i] != s.rationales[j]]


def start(tasks: tuple[Task, ...], held_out: tuple[Task, ...], options: LearningOptions):
    if len(tasks) <= options.exam_size:
        raise ValueError(f"{len(tasks)} tasks cannot give each teaching problem an exam of {options.exam_size} others")
    s = LearningByTeaching(options=options, lessons=lessons_of(tasks, options.exam_size))
    return Evaluate(state=s, stage="measured_base", role="teacher", protocol="answer")


def measured_base(s: LearningByTeaching, result: Evaluated):
    return teach(s.replace(baseline=result.accuracy))


def teach(s: LearningByTeaching) -> RunEpisodes:
    return RunEpisodes(state=s, stage="examined", protocol="teach-and-exam", tasks=s.lessons,
                       options={"rationales": s.options.rationales})


def examined(s: LearningByTeaching, result: Episodes):
    done = [e for e in result.episodes if e.outcome.error is None]

    def share(metric: str) -> float | None:
        return sum(e.outcome.metrics[metric] for e in done) / len(done) if done else None

    pairs = tuple(p for e in done for p in ranked_pairs(e))
    s = s.replace(report=s.report.replace(lessons=len(done), lbt_max=share("lbt_max"), lbt_sum=share("lbt_sum"),
                                          majority=share("majority"), any_right=share("any_right"), pairs=len(pairs)))
    if not s.options.train_teacher:
        return next_round(s)
    return Train(state=s, stage="trained", role="teacher", pairs=pairs)


def trained(s: LearningByTeaching, result: Trained):
    s = s.replace(report=s.report.replace(trained=result))
    return Evaluate(state=s, stage="measured", role="teacher", protocol="answer")


def measured(s: LearningByTeaching, result: Evaluated):
    return next_round(s.replace(report=s.report.replace(accuracy=result.accuracy)))


def next_round(s: LearningByTeaching):
    s = s.replace(round=s.round + 1, reports=s.reports + (s.report,), report=RoundReport(round=s.round + 1))
    if s.round >= s.options.rounds:
        rows = [r.model_dump(mode="json", exclude={"trained"}) for r in s.reports]
        return Stop(state=s, summary={"teacher_baseline": s.baseline, "rounds": rows})
    return teach(s)


lbt = Program(
    name="lbt",
    description="learning by teaching: rationales scored by students' exams (M1), the teacher trained on them (M2)",
    roles=("teacher", "student"), state=LearningByTeaching, options=LearningOptions, start=start,
    first=("measured_base",), protocols={p.name: p for p in (answer, teach_and_exam)}, trains={"teacher": "dpo"},
    stages={
        "measured_base": Stage(measured_base, then=("examined",), doc="the teacher, held-out, before"),
        "examined": Stage(examined, then=("trained", "examined", END), doc="M1 selection beside majority vote"),
        "trained": Stage(trained, then=("measured",), doc="M2: DPO on ranked rationales"),
        "measured": Stage(measured, then=("examined", END), doc="the teacher's held-out accuracy"),
    },
)
