"""LLM2LLM (Lee et al., 2024: "LLM2LLM: Boosting LLMs with Novel Iterative Data Enhancement"):
targeted, iterative augmentation of a small seed set. Each iteration:

1. fine-tune the student on the current data, from the base model (never from the last
   iteration's weights);
2. evaluate it on the seed items;
3. for each seed item it gets wrong, the teacher writes one new item like it (near-duplicates of
   the data and of the held-out set dropped);
4. add them to the data, and repeat.

New items are written only from wrong *seed* items, never from synthetic ones: the paper's guard
against drifting away from the seed distribution. Held-out accuracy is measured after every
fine-tuning.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from academe.agents.records import Record, SFTExample, Task
from academe.protocols.answer import answer, prompt_for
from academe.protocols.engine import END, Options, user
from academe.protocols.making import Failure, NearDuplicates, keep_new, make_problem
from academe.protocols.program import (Episodes, Evaluate, Evaluated, Program, ProgramState, RunEpisodes, Stage, Stop,
                                       Train, Trained)


class AugmentationOptions(Options):
    iterations: int = Field(3, ge=1, le=1000, description="fine-tunings (new items are written between them)")
    targets: Literal["wrong", "random"] = Field(
        "wrong", description="seed items new ones are written from: those the student got wrong (LLM2LLM), or "
        "as many drawn at random from all seed items (the paper's untargeted control)")
    similarity: float = Field(0.9, gt=0, le=1, description="a new item this similar (0..1) to a known one is dropped")
    numbers_matter: bool = Field(True, description="a similar word problem with other numbers is a new item")


class Iteration(Record):
    iteration: int
    data: int = 0  # items trained on: seeds + synthetic
    trained: Trained | None = None
    accuracy: float | None = None  # held-out, after this iteration's fine-tuning
    seed_accuracy: float | None = None  # on the seed items it was trained on
    wrong: int | None = None  # seed items it got wrong (not checked after the last fine-tuning)
    written: int | None = None
    dropped: dict[str, int] = Field(default_factory=dict)


class Augmentation(ProgramState):
    options: AugmentationOptions
    seeds: tuple[Task, ...]
    synthetic: tuple[Task, ...] = ()
    reserved: tuple[str, ...] = ()  # held-out questions: no new item may copy one
    baseline: float | None = None
    report: Iteration = Iteration(iteration=0)
    reports: tuple[Iteration, ...] = ()


def example(task: Task) -> SFTExample:
    """An item as training data: its question as the student is asked it, its worked answer as target."""
    return SFTExample(messages=(user(prompt_for(task)),), target=task.solution or f"Answer: {task.answer}")


def start(tasks: tuple[Task, ...], held_out: tuple[Task, ...], options: AugmentationOptions):
    s = Augmentation(options=options, seeds=tasks, reserved=tuple(t.question for t in held_out))
    return Evaluate(state=s, stage="measured_base", role="student", protocol="answer")


def fine_tune(s: Augmentation) -> Train:
    data = s.seeds + s.synthetic
    s = s.replace(report=s.report.replace(data=len(data)))
    return Train(state=s, stage="fine_tuned", role="student", sft=tuple(map(example, data)), from_base=True)


def measured_base(s: Augmentation, result: Evaluated):
    return fine_tune(s.replace(baseline=result.accuracy))


def fine_tuned(s: Augmentation, result: Trained):
    s = s.replace(report=s.report.replace(trained=result))
    return Evaluate(state=s, stage="measured", role="student", protocol="answer")


def measured(s: Augmentation, result: Evaluated):
    s = s.replace(report=s.report.replace(accuracy=result.accuracy))
    if s.round + 1 >= s.options.iterations:
        return stop(s)
    return RunEpisodes(state=s, stage="answered", protocol="answer", tasks=s.seeds)


def answered(s: Augmentation, result: Episodes):
    attempts = [Failure(**e.task.base().model_dump(), attempt=e.state.reply) for e in result.episodes]
    wrong = tuple(a for a, e in zip(attempts, result.episodes) if e.outcome.solved is False)
    right = sum(e.outcome.solved is True for e in result.episodes)
    s = s.replace(report=s.report.replace(seed_accuracy=right / len(s.seeds), wrong=len(wrong)))
    if not wrong:  # nothing left to learn from: the data cannot grow
        return stop(s)
    if s.options.targets == "random":  # the control: as many items, blind to what the student got wrong
        draw = random.Random(f"{s.round}:{s.seeds[0].id}")
        wrong = tuple(draw.sample(attempts, len(wrong)))
    return RunEpisodes(state=s, stage="written", protocol="make-problem", tasks=wrong)


def written(s: Augmentation, result: Episodes):
    known = NearDuplicates([t.question for t in s.seeds + s.synthetic] + list(s.reserved), s.options.similarity,
                           same_numbers=s.options.numbers_matter)
    kept, dropped = keep_new(result.episodes, known, s.reserved, s.round, written=lambda e: e.state.made,
                             name=lambda e: f"i{s.round}-e{e.episode}")
    new = [task for task, _ in kept]
    report = s.report.replace(written=len(new), dropped=dropped)
    s = s.replace(round=s.round + 1, synthetic=s.synthetic + tuple(new), reports=s.reports + (report,),
                  report=Iteration(iteration=s.round + 1))
    return fine_tune(s)


def stop(s: Augmentation) -> Stop:
    s = s.replace(round=s.round + 1, reports=s.reports + (s.report,))
    return Stop(state=s, summary={"baseline": s.baseline, "accuracy": [r.accuracy for r in s.reports],
                                  "data": [r.data for r in s.reports], "synthetic": len(s.synthetic),
                                  "iterations": [r.model_dump(mode="json", exclude={"trained"}) for r in s.reports]})


llm2llm = Program(
    name="llm2llm",
    description="LLM2LLM: the teacher writes new items from the seed items the student gets wrong",
    roles=("student", "teacher"), state=Augmentation, options=AugmentationOptions, start=start,
    first=("measured_base",), protocols={p.name: p for p in (answer, make_problem)}, trains={"student": "sft"},
    stages={
        "measured_base": Stage(measured_base, then=("fine_tuned",), doc="held-out, before training"),
        "fine_tuned": Stage(fine_tuned, then=("measured",), doc="SFT from the base model"),
        "measured": Stage(measured, then=("answered", END), doc="held-out accuracy"),
        "answered": Stage(answered, then=("written", END), doc="the seed items it gets wrong"),
        "written": Stage(written, then=("fine_tuned",), doc="one new item per wrong seed item"),
    },
)
