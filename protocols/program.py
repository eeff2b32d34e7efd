"""Round-level programs: loops of episodes, training and evaluation, as explicit as protocols.

A program is a serialisable state and pure functions. ``start`` gives the first action; each stage
names the function that turns ``(state, result of the last action)`` into the next action, and the
stages it may lead to. An action is what the runner does next: run episodes of a protocol on some
tasks (``RunEpisodes``), fine-tune the model of a role on some data (``Train``), measure a role on
the held-out tasks (``Evaluate``), or ``Stop``. Every action carries the new state and names the
stage that receives its result, so the stages form a graph that is checked like a protocol's
phases. The program never touches Ray, models or files: the runner does the action, logs each
decision before acting on it, and can therefore resume a killed program mid-round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Union

import networkx as nx
from pydantic import Field, SerializeAsAny

from academe.agents.records import ChatMessage, PreferencePair, Record, Reply, SFTExample, Task
from academe.protocols.engine import EpisodeState, Options, Outcome, Protocol, ProtocolError, TransitionError
from academe.protocols.graph import END, START, check_edge, check_flow, draw, flow_graph


class ProgramState(Record):
    """Base of every program's state: the round, and anything needed to decide what comes next."""

    round: int = Field(0, ge=0)


# ---- what a program sees of finished work ----


class Turn(Record):
    """One answered ask of a finished episode: the prompt the protocol built (``asked``), the
    prompt as the agent sent it (``sent``: persona applied), and the reply."""

    step: int
    phase: str
    role: str
    seat: int
    agent: str
    asked: tuple[ChatMessage, ...]
    sent: tuple[ChatMessage, ...]
    reply: Reply

    @property
    def text(self) -> str:
        return self.reply.text


class EpisodeResult(Record):
    episode: int
    task: SerializeAsAny[Task]
    outcome: Outcome
    state: SerializeAsAny[EpisodeState]
    turns: tuple[Turn, ...]


class Episodes(Record):
    """The result of ``RunEpisodes``: every episode, in the order of the action's tasks."""

    kind: Literal["episodes"] = "episodes"
    episodes: tuple[EpisodeResult, ...]


class Trained(Record):
    """The result of ``Train``: the new version, or why none was made."""

    kind: Literal["trained"] = "trained"
    role: str
    model: str
    version: int
    examples: int
    steps: int = 0
    tokens: int = 0  # training tokens of the phase (equal-compute comparisons add them up)
    loss_first: float | None = None
    loss_last: float | None = None
    losses: tuple[float, ...] = ()
    skipped: str | None = None


class Evaluated(Record):
    """The result of ``Evaluate``: held-out accuracy of a role's model, and which version answered."""

    kind: Literal["evaluated"] = "evaluated"
    role: str
    model: str
    version: int
    accuracy: float | None
    tasks: int
    also: dict[str, float | None] = Field(default_factory=dict)  # evaluation.also: further held-out sets, by name


Result = Union[Episodes, Trained, Evaluated, None]


# ---- what a program asks for ----


class RunEpisodes(Record):
    """Run one episode of ``protocol`` per task; ``cast`` maps the protocol's roles to the
    program's (default: the same names), so one protocol can be played by different agents."""

    kind: Literal["run-episodes"] = "run-episodes"
    state: SerializeAsAny[ProgramState]
    stage: str
    protocol: str
    tasks: tuple[SerializeAsAny[Task], ...] = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    cast: dict[str, str] = Field(default_factory=dict)


class Train(Record):
    """Fine-tune the model of ``role`` (its agent in ``seat``) on ``sft`` examples or preference
    ``pairs``. Messages are as the protocol built them: the runner adds the agent's persona, so
    the model learns from prompts exactly as that agent is asked. ``from_base`` trains from the
    base model instead of the last version (the new version still replaces it everywhere)."""

    kind: Literal["train"] = "train"
    state: SerializeAsAny[ProgramState]
    stage: str
    role: str
    seat: int = Field(0, ge=0)
    sft: tuple[SFTExample, ...] = ()
    pairs: tuple[PreferencePair, ...] = ()
    from_base: bool = False


class Evaluate(Record):
    """Measure the held-out accuracy of the model of ``role`` (the config's ``evaluation`` tasks)."""

    kind: Literal["evaluate"] = "evaluate"
    state: SerializeAsAny[ProgramState]
    stage: str
    role: str
    seat: int = Field(0, ge=0)
    protocol: str = Field(description="whose opening prompt asks each held-out task")


class Stop(Record):
    kind: Literal["stop"] = "stop"
    state: SerializeAsAny[ProgramState]
    summary: dict[str, Any] = Field(default_factory=dict)


Action = Union[RunEpisodes, Train, Evaluate, Stop]


@dataclass(frozen=True)
class Stage:
    on_result: Callable[[Any, Any], Action]
    then: tuple[str, ...]
    doc: str = ""


@dataclass(frozen=True)
class Program:
    """``start(tasks, held_out, options)`` gives the first action: ``tasks`` is the seed pool,
    ``held_out`` the evaluation tasks (never to be trained on). ``trains`` names, per role, the
    kind of data its model learns from: a ``Train`` of another role or kind is refused, and the
    config must give each such role's model a ``training`` section."""

    name: str
    roles: tuple[str, ...]
    state: type[ProgramState]
    start: Callable[[tuple[Task, ...], tuple[Task, ...], Any], Action]
    first: tuple[str, ...]
    stages: dict[str, Stage]
    protocols: dict[str, Protocol]
    options: type[Options] = Options
    trains: dict[str, Literal["sft", "dpo"]] = field(default_factory=dict)
    description: str = ""
    graph: nx.DiGraph = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        then = {stage: spec.then for stage, spec in self.stages.items()}
        object.__setattr__(self, "graph", flow_graph(self.first, then, {s: spec.doc for s, spec in self.stages.items()}))
        check_flow("stage", f"program {self.name!r}", self.first, then, self.graph, ProtocolError)
        for role in self.trains:
            if role not in self.roles:
                raise ProtocolError(f"program {self.name!r} trains unknown role {role!r}; its roles: {', '.join(self.roles)}")

    def begin(self, tasks: tuple[Task, ...], held_out: tuple[Task, ...], options: Options | None = None) -> Action:
        action = self.start(tuple(tasks), tuple(held_out), options if options is not None else self.options())
        self._check(START, action)
        return action

    def step(self, stage: str, state: ProgramState, result: Result) -> Action:
        if stage not in self.stages:
            raise TransitionError(f"program {self.name!r} has no stage {stage!r}")
        action = self.stages[stage].on_result(state, result)
        self._check(stage, action)
        return action

    def _check(self, source: str, action: Action) -> None:
        if not isinstance(action, (RunEpisodes, Train, Evaluate, Stop)):
            raise TransitionError(f"program {self.name!r}: stage {source!r} returned a {type(action).__name__}, "
                                  "not an action (RunEpisodes, Train, Evaluate or Stop)")
        target = END if isinstance(action, Stop) else action.stage
        check_edge("stage", f"program {self.name!r}", self.graph, source, target, TransitionError)
        if not isinstance(action.state, self.state):
            raise TransitionError(f"program {self.name!r}: stage {source!r} returned a {type(action.state).__name__}"
                                  f" state, not a {self.state.__name__}")
        roles = [action.role] if isinstance(action, (Train, Evaluate)) else []
        if isinstance(action, Train):
            self._check_training(source, action)
        if isinstance(action, (RunEpisodes, Evaluate)):
            protocol = self.protocol(action.protocol)
            if isinstance(action, RunEpisodes):
                roles = [action.cast.get(r, r) for r in protocol.roles]
                wrong = next((t for t in action.tasks if not isinstance(t, protocol.task)), None)
                if wrong is not None:
                    raise TransitionError(f"program {self.name!r}: stage {source!r} gave protocol {protocol.name!r} "
                                          f"a {type(wrong).__name__} ({wrong.id!r}); it runs on "
                                          f"{protocol.task.__name__} tasks")
        unknown = [r for r in roles if r not in self.roles]
        if unknown:
            raise TransitionError(f"program {self.name!r}: stage {source!r} needs role(s) {', '.join(unknown)}, "
                                  f"which the program does not have ({', '.join(self.roles)})")

    def _check_training(self, source: str, action: Train) -> None:
        kind = self.trains.get(action.role)
        given = "dpo" if action.pairs else "sft" if action.sft else None
        if kind is None:
            raise TransitionError(f"program {self.name!r}: stage {source!r} trains role {action.role!r}, which the "
                                  f"program does not declare in trains ({', '.join(self.trains) or 'none'})")
        if given not in (None, kind) or (action.pairs and action.sft):
            raise TransitionError(f"program {self.name!r}: stage {source!r} gives role {action.role!r} "
                                  f"{'both kinds of' if action.sft and action.pairs else given} data; "
                                  f"the program declares {kind} for it")

    def protocol(self, name: str) -> Protocol:
        try:
            return self.protocols[name]
        except KeyError:
            raise TransitionError(f"program {self.name!r} uses no protocol {name!r}; "
                                  f"it uses: {', '.join(self.protocols)}") from None

    def parse_options(self, raw: dict | None) -> Options:
        return self.options.model_validate(raw or {})

    def draw(self, path: str) -> str:
        return draw(self.graph, f"program {self.name}", path)
