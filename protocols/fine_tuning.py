"""Plain fine-tuning: the baseline that round-level programs are measured against.

Each round the solver is fine-tuned (SFT) on the seed problems' reference solutions, then
measured on the held-out problems. With the same rounds and trainer settings as a program, it
spends the same optimizer steps on the seed problems only, with no other agent involved.
"""

from __future__ import annotations

from pydantic import Field

from academe.agents.records import SFTExample, Task
from academe.protocols.engine import END, Options, user
from academe.protocols.program import Evaluate, Evaluated, Program, ProgramState, Stage, Stop, Train, Trained
from academe.protocols.socratic import attempt_prompt
from academe.protocols.socratic_zero import attempts


class FineTuningOptions(Options):
    rounds: int = Field(3, ge=1, le=10_000)


class FineTuning(ProgramState):
    rounds: int
    examples: tuple[SFTExample, ...]
    accuracy: tuple[float | None, ...] = ()  # before training, then after each round
    trained: tuple[Trained, ...] = ()


def reference_example(task: Task) -> SFTExample:
    return SFTExample(messages=(user(attempt_prompt(task)),), target=task.solution or f"Answer: {task.answer}")


def start(tasks: tuple[Task, ...], held_out: tuple[Task, ...], options: FineTuningOptions):
    s = FineTuning(rounds=options.rounds, examples=tuple(reference_example(t) for t in tasks))
    return Evaluate(state=s, stage="evaluated", role="solver", protocol="solve-and-verify")


def evaluated(s: FineTuning, result: Evaluated):
    before_training = not s.accuracy
    s = s.replace(accuracy=s.accuracy + (result.accuracy,), round=s.round if before_training else s.round + 1)
    if s.round >= s.rounds:
        return Stop(state=s, summary={"baseline": s.accuracy[0], "accuracy": list(s.accuracy[1:])})
    return Train(state=s, stage="trained", role="solver", sft=s.examples)


def trained(s: FineTuning, result: Trained):
    s = s.replace(trained=s.trained + (result,))
    return Evaluate(state=s, stage="evaluated", role="solver", protocol="solve-and-verify")


fine_tuning = Program(
    name="fine-tuning",
    description="plain SFT of the solver on the seed problems' reference solutions, every round",
    roles=("solver",), state=FineTuning, options=FineTuningOptions, start=start, first=("evaluated",),
    protocols={attempts.name: attempts}, trains={"solver": "sft"},
    stages={"evaluated": Stage(evaluated, then=("trained", END), doc="held-out accuracy"),
            "trained": Stage(trained, then=("evaluated",), doc="SFT on reference solutions")},
)
