"""Socratic-Zero (Wang et al., 2025: "Socratic-Zero: Bootstrapping Reasoning via Data-Free Agent
Co-evolution"): a teacher, a solver and a generator co-evolve. Each round:

1. the solver attempts every problem of the pool it has not mastered, k times with seeded
   sampling, and the teacher verifies each attempt;
2. the solver's correct x incorrect attempts at the same problem become its DPO pairs;
3. the teacher turns one failed attempt of each failed problem into a new problem with its
   answer; replies that do not parse and near-duplicates of the pool or the held-out set are
   dropped, with the reason;
4. the solver attempts the new problems; its success rate s on each puts the problem in a zone
   (mastered, learning, too hard) and weighs the teacher's (failure -> new problem) turn, as SFT
   data for the generator, by U(s) = exp(-(s - 1/2)^2 / (2 sigma^2)): the generator learns to
   write problems at the edge of what the solver can do. The ``curriculum`` sets how hard the
   new problems are: as hard as the failed one (``fixed``), easier, as hard or harder at random
   (``random``), or all three written and the one with the highest U(s) kept (``learning-zone``);
5. from round ``train_from_round`` on, the solver is trained by DPO and the generator by
   weighted SFT; the solver is measured on held-out problems; the new problems join the pool.
"""

from __future__ import annotations

import math
import random
import re
from typing import Literal, get_args

from pydantic import Field

from academe.agents.records import ChatMessage, PreferencePair, Record, SFTExample, Task
from academe.protocols.engine import END, Answer, Ask, Done, EpisodeState, Next, Options, Outcome, Phase, Protocol, user
from academe.protocols.making import Difficulty, Failure, NearDuplicates, keep_new, make_problem

DIFFICULTIES: tuple[Difficulty, ...] = get_args(Difficulty)
from academe.protocols.program import (Episodes, EpisodeResult, Evaluate, Evaluated, Program, ProgramState,
                                       RunEpisodes, Stage, Stop, Train, Trained)
from academe.protocols.socratic import attempt_prompt

Zone = Literal["new", "mastered", "learning", "too hard"]
_VERDICT = re.compile(r"verdict\s*:\s*\**\s*(correct|incorrect)", re.IGNORECASE)


# ---- episode protocol 1: the solver attempts k times, the teacher verifies every attempt ----


class AttemptOptions(Options):
    k: int = Field(8, ge=1, le=256, description="attempts per problem")


class Attempts(EpisodeState):
    attempts: tuple[str, ...] = ()
    verdicts: tuple[bool | None, ...] = ()  # None: the teacher's verdict did not parse

    @property
    def success_rate(self) -> float:
        return sum(v is True for v in self.verdicts) / len(self.verdicts) if self.verdicts else 0.0


def verify_prompt(task: Task, attempt: str) -> str:
    return (f"Problem: {task.question}\nReference answer: {task.answer}\n\nA student's attempt:\n<attempt>\n{attempt}\n"
            "</attempt>\n\nIs the attempt's final answer correct? Reply 'Verdict: correct' or 'Verdict: incorrect'.")


def parse_verdict(text: str) -> bool | None:
    found = _VERDICT.findall(text)
    return found[-1].lower() == "correct" if found else None


def begin_attempts(task: Task, options: AttemptOptions):
    solve = Ask(messages=(user(attempt_prompt(task)),))
    return Next(state=Attempts(task=task), phase="solve", asks=(solve,) * options.k)


def solver_answered(s: Attempts, answers: tuple[Answer, ...]):
    s = s.replace(attempts=tuple(a.text for a in answers))
    return Next(state=s, phase="verify", asks=tuple(Ask(messages=(user(verify_prompt(s.task, t)),)) for t in s.attempts))


def teacher_verified(s: Attempts, answers: tuple[Answer, ...]):
    s = s.replace(verdicts=tuple(parse_verdict(a.text) for a in answers))
    unparsed = sum(v is None for v in s.verdicts)
    notes = {"parse": f"{unparsed} verdict(s) did not parse"} if unparsed else {}
    rate = s.success_rate
    return Done(state=s, notes=notes, outcome=Outcome(solved=rate > 0, score=rate, rewards={"solver": rate},
                                                      metrics={"success_rate": rate, "unverified": unparsed}))


attempts = Protocol(
    name="solve-and-verify",
    description="the solver attempts a problem k times; the teacher verifies each attempt",
    roles=("solver", "teacher"), state=Attempts, options=AttemptOptions, start=begin_attempts, first=("solve",),
    phases={"solve": Phase("solver", solver_answered, then=("verify",), doc="k attempts, seeded sampling"),
            "verify": Phase("teacher", teacher_verified, then=(END,), doc="a verdict per attempt")},
)


# ---- the program ----


class CoEvolutionOptions(Options):
    rounds: int = Field(3, ge=1, le=10_000)
    k: int = Field(8, ge=2, le=256, description="solver attempts per problem")
    sigma: float = Field(0.2, gt=0, description="width of U(s) = exp(-(s - 0.5)^2 / (2 sigma^2))")
    train_from_round: int = Field(0, ge=0, description="first round (0-based) whose data trains solver and generator")
    mastered_at: float = Field(1.0, gt=0, le=1, description="success rate at or above which a problem is mastered")
    too_hard_at: float = Field(0.0, ge=0, lt=1, description="success rate at or below which a problem is too hard")
    new_per_round: int | None = Field(None, ge=1, description="at most this many failures made into new problems per round")
    similarity: float = Field(0.9, gt=0, le=1, description="a new problem this similar (0..1) to a known one is dropped")
    numbers_matter: bool = Field(True, description="a similar problem with other numbers is a new problem, not a copy")
    curriculum: Literal["fixed", "random", "learning-zone"] = Field(
        "fixed", description="how hard new problems are: as the failed one; easier, as hard or harder at random; "
        "or all three made and tried, and only the one with the highest U(s) kept")


class Problem(Record):
    task: Task
    zone: Zone = "new"
    success: float | None = None  # the solver's success rate at its last attempts


class Made(Record):
    """A new problem and the teacher's turn that wrote it (the generator's example, once weighed)."""

    task: Task
    asked: tuple[ChatMessage, ...]
    written: str
    difficulty: Difficulty = "same"  # as asked of the teacher


class RoundReport(Record):
    round: int
    attempted: int = 0
    errors: int = 0  # attempt episodes that broke (an agent failed): left out of zones and pairs
    zones: dict[str, int] = Field(default_factory=dict)  # of the whole pool, at the end of the round
    pairs: int = 0
    failures: int = 0
    made: int = 0
    dropped: dict[str, int] = Field(default_factory=dict)  # reasons new problems were dropped
    new_zones: dict[str, int] = Field(default_factory=dict)
    weights: tuple[float, ...] = ()  # the generator's examples' weights U(s)
    solver: Trained | None = None
    generator: Trained | None = None
    accuracy: float | None = None
    solver_version: int | None = None


class CoEvolution(ProgramState):
    options: CoEvolutionOptions
    pool: tuple[Problem, ...]
    reserved: tuple[str, ...] = ()  # held-out questions: no new problem may copy one
    baseline: float | None = None
    pairs: tuple[PreferencePair, ...] = ()  # this round's DPO pairs for the solver
    made: tuple[Made, ...] = ()  # this round's new problems, until the solver has tried them
    examples: tuple[SFTExample, ...] = ()  # this round's weighted examples for the generator
    report: RoundReport = RoundReport(round=0)
    reports: tuple[RoundReport, ...] = ()


def weight(s: float, sigma: float) -> float:
    """U(s): highest for problems the solver solves half the time."""
    return math.exp(-((s - 0.5) ** 2) / (2 * sigma**2))


def zone(s: float, o: CoEvolutionOptions) -> Zone:
    return "mastered" if s >= o.mastered_at else "too hard" if s <= o.too_hard_at else "learning"


def correct_vs_incorrect(e: EpisodeResult) -> list[PreferencePair]:
    """Every (correct, incorrect) pair of the solver's attempts at one problem."""
    state: Attempts = e.state
    asked = next((t.asked for t in e.turns if t.phase == "solve"), None)
    if asked is None:
        return []
    right = [a for a, v in zip(state.attempts, state.verdicts) if v is True]
    wrong = [a for a, v in zip(state.attempts, state.verdicts) if v is False]
    return [PreferencePair(messages=asked, chosen=c, rejected=r, task=e.task.id)
            for c in right for r in wrong if c != r]


def first_failure(e: EpisodeResult) -> Failure | None:
    state: Attempts = e.state
    wrong = [a for a, v in zip(state.attempts, state.verdicts) if v is False]
    return Failure(**e.task.base().model_dump(), attempt=wrong[0]) if wrong else None


def pool_zones(pool) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in pool:
        counts[p.zone] = counts.get(p.zone, 0) + 1
    return counts


def attempt(s: CoEvolution) -> RunEpisodes | Train:
    todo = tuple(p.task for p in s.pool if p.zone != "mastered")
    if not todo:
        return train_solver(s)
    return RunEpisodes(state=s, stage="attempted", protocol="solve-and-verify", tasks=todo, options={"k": s.options.k})


def start(tasks: tuple[Task, ...], held_out: tuple[Task, ...], options: CoEvolutionOptions):
    s = CoEvolution(options=options, pool=tuple(Problem(task=t) for t in tasks),
                    reserved=tuple(t.question for t in held_out))
    return Evaluate(state=s, stage="measured", role="solver", protocol="solve-and-verify")


def measured(s: CoEvolution, result: Evaluated):
    return attempt(s.replace(baseline=result.accuracy))


def measured_episodes(result: Episodes) -> list[EpisodeResult]:
    """The episodes that ran to a verdict (one that broke says nothing about the solver)."""
    return [e for e in result.episodes if e.outcome.error is None]


def attempted(s: CoEvolution, result: Episodes):
    episodes = measured_episodes(result)
    rates = {e.task.id: e.state.success_rate for e in episodes}
    pool = tuple(p.replace(success=rates[p.task.id], zone=zone(rates[p.task.id], s.options)) if p.task.id in rates
                 else p for p in s.pool)
    pairs = tuple(pair for e in episodes for pair in correct_vs_incorrect(e))
    failures = tuple(f for e in episodes if (f := first_failure(e)) is not None)[: s.options.new_per_round]
    report = s.report.replace(attempted=len(episodes), pairs=len(pairs), failures=len(failures),
                              errors=len(result.episodes) - len(episodes))
    s = s.replace(pool=pool, pairs=pairs, report=report)
    if not failures:
        return train_solver(s)
    return RunEpisodes(state=s, stage="made", protocol="make-problem", tasks=asked_difficulty(failures, s))


def asked_difficulty(failures: tuple[Failure, ...], s: CoEvolution) -> tuple[Failure, ...]:
    """The new problems to ask the teacher for, with the difficulty the curriculum sets."""
    if s.options.curriculum == "fixed":
        return failures
    if s.options.curriculum == "random":
        return tuple(f.replace(difficulty=random.Random(f"{s.round}:{f.id}").choice(DIFFICULTIES)) for f in failures)
    return tuple(f.replace(difficulty=d) for f in failures for d in DIFFICULTIES)


def in_learning_zone(made: list[Made], rates: dict[str, float], sigma: float) -> set[str]:
    """Of the problems made from one failure, the one whose success rate is nearest 1/2 (highest
    U(s); the same difficulty on a tie), by task id."""
    by_parent: dict[str, list[Made]] = {}
    for m in made:
        by_parent.setdefault(m.task.origin.parent, []).append(m)
    order = {"same": 0, "easier": 1, "harder": 2}
    return {max(group, key=lambda m: (weight(rates[m.task.id], sigma), -order[m.difficulty])).task.id
            for group in by_parent.values()}


def made(s: CoEvolution, result: Episodes):
    known = NearDuplicates([p.task.question for p in s.pool] + list(s.reserved), s.options.similarity,
                           same_numbers=s.options.numbers_matter)
    new, dropped = keep_new(result.episodes, known, s.reserved, s.round, written=lambda e: e.state.made,
                            name=lambda e: f"r{s.round}-e{e.episode}")
    kept = [Made(task=task, asked=e.turns[0].asked, written=e.turns[0].text, difficulty=e.task.difficulty)
            for task, e in new]
    s = s.replace(made=tuple(kept), report=s.report.replace(made=len(kept), dropped=dropped))
    if not kept:
        return train_solver(s)
    return RunEpisodes(state=s, stage="tried", protocol="solve-and-verify", tasks=tuple(m.task for m in kept),
                       options={"k": s.options.k})


def tried(s: CoEvolution, result: Episodes):
    episodes = measured_episodes(result)
    rates = {e.task.id: e.state.success_rate for e in episodes}
    tried_ones = [m for m in s.made if m.task.id in rates]
    examples = tuple(SFTExample(messages=m.asked, target=m.written, weight=weight(rates[m.task.id], s.options.sigma),
                                episode=m.task.origin.episode) for m in tried_ones)
    dropped = dict(s.report.dropped)
    if s.options.curriculum == "learning-zone":  # only the candidate nearest s = 1/2 joins the pool and trains
        keep = in_learning_zone(tried_ones, rates, s.options.sigma)
        dropped["outside the learning zone"] = len(tried_ones) - len(keep)
        episodes = [e for e in episodes if e.task.id in keep]
        s = s.replace(made=tuple(m for m in s.made if m.task.id in keep or m.task.id not in rates))
    new = tuple(Problem(task=m.task, success=rates[m.task.id], zone=zone(rates[m.task.id], s.options))
                if m.task.id in rates else Problem(task=m.task) for m in s.made)
    pairs = s.pairs + tuple(pair for e in episodes for pair in correct_vs_incorrect(e))
    report = s.report.replace(pairs=len(pairs), new_zones=pool_zones(new), weights=tuple(x.weight for x in examples),
                              dropped=dropped)
    return train_solver(s.replace(pool=s.pool + new, made=(), examples=examples, pairs=pairs, report=report))


def train_solver(s: CoEvolution):
    s = s.replace(report=s.report.replace(zones=pool_zones(s.pool)))
    if s.round < s.options.train_from_round:
        return Evaluate(state=s, stage="evaluated", role="solver", protocol="solve-and-verify")
    return Train(state=s.replace(pairs=()), stage="solver_trained", role="solver", pairs=s.pairs)  # logged once


def solver_trained(s: CoEvolution, result: Trained):
    s = s.replace(report=s.report.replace(solver=result))
    return Train(state=s.replace(examples=()), stage="generator_trained", role="generator", sft=s.examples)


def generator_trained(s: CoEvolution, result: Trained):
    s = s.replace(report=s.report.replace(generator=result))
    return Evaluate(state=s, stage="evaluated", role="solver", protocol="solve-and-verify")


def evaluated(s: CoEvolution, result: Evaluated):
    report = s.report.replace(accuracy=result.accuracy, solver_version=result.version)
    s = s.replace(round=s.round + 1, pairs=(), examples=(), reports=s.reports + (report,),
                  report=RoundReport(round=s.round + 1))
    if s.round >= s.options.rounds:
        rounds = [r.model_dump(mode="json", exclude={"solver", "generator"}) for r in s.reports]
        return Stop(state=s, summary={"baseline": s.baseline, "accuracy": [r.accuracy for r in s.reports],
                                      "pool": len(s.pool), "zones": pool_zones(s.pool), "rounds": rounds})
    return attempt(s)


socratic_zero = Program(
    name="socratic-zero",
    description="Socratic-Zero: solver, teacher and generator co-evolve over rounds",
    roles=("solver", "teacher", "generator"), state=CoEvolution, options=CoEvolutionOptions, start=start,
    first=("measured",), protocols={p.name: p for p in (attempts, make_problem)},
    trains={"solver": "dpo", "generator": "sft"},
    stages={
        "measured": Stage(measured, then=("attempted", "solver_trained", "evaluated"), doc="held-out, before training"),
        "attempted": Stage(attempted, then=("made", "solver_trained", "evaluated"), doc="k attempts, verified"),
        "made": Stage(made, then=("tried", "solver_trained", "evaluated"), doc="failures -> new problems"),
        "tried": Stage(tried, then=("solver_trained", "evaluated"), doc="zones and U(s) of new problems"),
        "solver_trained": Stage(solver_trained, then=("generator_trained",), doc="DPO"),
        "generator_trained": Stage(generator_trained, then=("evaluated",), doc="SFT weighted by U(s)"),
        "evaluated": Stage(evaluated, then=("attempted", "solver_trained", "evaluated", END), doc="held-out accuracy"),
    },
)
