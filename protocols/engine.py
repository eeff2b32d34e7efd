"""The protocol engine: explicit episode state, phases as a checked graph, pure step functions.

A protocol is data plus pure functions. ``start(task, options)`` gives the first step; each phase
names the role (or roles) that speak in it, the function that turns ``(state, answers)`` into the
next step, and the phases it may lead to. A step is ``Next`` (new state, the next phase, the asks
for it) or ``Done`` (final state and outcome). An ask goes to the agents playing a role: one seat
by position or name, or every agent of the role; their answers come back in ask order, each with
the agent that gave it. The runner owns Ray, batching, logging and resume, so a protocol file never
touches them; because every state is a frozen, serialisable record, any episode can be
checkpointed, resumed, forked and replayed at any step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, NamedTuple, Sequence

import networkx as nx
from pydantic import Field, SerializeAsAny, model_validator

from academe.agents.records import ChatMessage, Record, Reply, Task
from academe.protocols.graph import END, START, check_edge, check_flow, draw, flow_graph


class EpisodeState(Record):
    """Base of every protocol's episode state: the task and anything needed to continue."""

    task: SerializeAsAny[Task]


class Options(Record):
    """Base of a protocol's options (config ``protocol.options``); none by default."""


class Outcome(Record):
    """How an episode ended. ``solved`` and ``score`` stay ``None`` where they do not apply (an
    open instruction with no reference, a turn that wrote a new problem)."""

    solved: bool | None = None
    score: float | None = None
    rewards: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    error: str | None = None


class Ask(Record):
    """One prompt for the agents playing ``role`` (default: the phase's role).

    ``seat`` (position among the role's agents, in config order) or ``agent`` (a name) picks one;
    with neither, every agent playing the role answers it, in seat order.
    """

    messages: tuple[ChatMessage, ...] = Field(min_length=1)
    role: str | None = None
    seat: int | None = Field(None, ge=0)
    agent: str | None = None

    @model_validator(mode="after")
    def _one_address(self):
        if self.seat is not None and self.agent is not None:
            raise ValueError("an ask names a seat or an agent, not both")
        return self


class Answer(Record):
    """What came back for one ask: the reply and who gave it."""

    role: str
    seat: int
    agent: str
    reply: Reply

    @property
    def text(self) -> str:
        return self.reply.text


class Seat(NamedTuple):
    role: str
    seat: int
    agent: str


Cast = Mapping[str, Sequence[str]]  # role -> the names of the agents playing it, in seat order


class Next(Record):
    """Continue: ``phase`` is next, and each of ``asks`` is answered by the agents it addresses."""

    state: SerializeAsAny[EpisodeState]
    phase: str
    asks: tuple[Ask, ...] = Field(min_length=1)
    notes: dict[str, str] = Field(default_factory=dict)


class Done(Record):
    """The episode is over."""

    state: SerializeAsAny[EpisodeState]
    outcome: Outcome
    notes: dict[str, str] = Field(default_factory=dict)


Step = Next | Done


def ask(phase: str, state: EpisodeState, *messages: ChatMessage, notes: dict | None = None) -> Next:
    """One prompt for the phase's role: the common case, spelled short."""
    return Next(state=state, phase=phase, asks=(Ask(messages=tuple(messages)),), notes=notes or {})


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage(role="assistant", content=text)


def system(text: str) -> ChatMessage:
    return ChatMessage(role="system", content=text)


# ---- training declarations: which turns are training data, and how (read by the trainers) ----


class SFT(Record):
    """The replies of ``role`` in ``phases`` are targets, from episodes whose outcome matches.

    ``turns="last"`` keeps only the role's last such reply of each episode (the one that solved
    it); ``prompt="first"`` pairs it with the role's first prompt of the episode instead of its own
    (STaR's rationalization: a guided answer becomes the target for the unaided question).
    """

    kind: Literal["sft"] = "sft"
    role: str
    phases: tuple[str, ...]
    when: Literal["always", "solved", "unsolved"] = "solved"
    turns: Literal["all", "last"] = "all"
    prompt: Literal["turn", "first"] = "turn"


class Preference(Record):
    """Chosen/rejected pairs: ``role``'s replies in solved vs unsolved episodes of the same task."""

    kind: Literal["preference"] = "preference"
    role: str
    phases: tuple[str, ...]


class Distill(Record):
    """``student`` imitates ``teacher``: the teacher's replies in ``phases`` become the targets."""

    kind: Literal["distill"] = "distill"
    student: str
    teacher: str
    phases: tuple[str, ...]


TrainSpec = SFT | Preference | Distill


class ProtocolError(ValueError):
    """A protocol definition or binding that cannot run; the message says what to fix."""


class TransitionError(RuntimeError):
    """A step function returned a step its phase graph does not allow."""


@dataclass(frozen=True)
class Phase:
    role: str | tuple[str, ...]
    on_reply: Callable[[Any, tuple[Answer, ...]], Step]
    then: tuple[str, ...]
    doc: str = ""

    @property
    def roles(self) -> tuple[str, ...]:
        return (self.role,) if isinstance(self.role, str) else tuple(self.role)


@dataclass(frozen=True)
class Protocol:
    name: str
    roles: tuple[str, ...]
    state: type[EpisodeState]
    start: Callable[[Task, Any], Step]
    first: tuple[str, ...]
    phases: dict[str, Phase]
    options: type[Options] = Options
    train: tuple[TrainSpec, ...] = ()
    description: str = ""
    task: type[Task] = Task  # what one episode is given: a Task, or a protocol's own kind of task
    graph: nx.DiGraph = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        then = {phase: spec.then for phase, spec in self.phases.items()}
        labels = {phase: ", ".join(spec.roles) for phase, spec in self.phases.items()}
        object.__setattr__(self, "graph", flow_graph(self.first, then, labels))
        validate(self)

    # -- running --
    def begin(self, task: Task, options: Options | None = None) -> Step:
        if not isinstance(task, self.task):
            raise TransitionError(f"protocol {self.name!r} runs on {self.task.__name__} tasks; "
                                  f"got a {type(task).__name__} ({task.id!r})")
        step = self.start(task, options if options is not None else self.options())
        self._check(START, step)
        return step

    def step(self, phase: str, state: EpisodeState, answers: Sequence[Answer]) -> Step:
        if phase not in self.phases:
            raise TransitionError(f"protocol {self.name!r} has no phase {phase!r}")
        nxt = self.phases[phase].on_reply(state, tuple(answers))
        self._check(phase, nxt)
        return nxt

    def _check(self, source: str, step: Step) -> None:
        if not isinstance(step, (Next, Done)):
            raise TransitionError(f"protocol {self.name!r}: phase {source!r} returned a {type(step).__name__}, "
                                  "not a Next or a Done")
        target = END if isinstance(step, Done) else step.phase
        check_edge("phase", f"protocol {self.name!r}", self.graph, source, target, TransitionError)
        if not isinstance(step.state, self.state):
            raise TransitionError(
                f"protocol {self.name!r}: phase {source!r} returned a {type(step.state).__name__}, "
                f"not a {self.state.__name__}"
            )
        if isinstance(step, Next):
            speakers = self.phases[step.phase].roles
            for a in step.asks:
                if a.role is None and len(speakers) > 1:
                    raise TransitionError(f"protocol {self.name!r}: phase {step.phase!r} is spoken by "
                                          f"{', '.join(speakers)}; each ask must name its role")
                if a.role is not None and a.role not in speakers:
                    raise TransitionError(f"protocol {self.name!r}: an ask to role {a.role!r} in phase "
                                          f"{step.phase!r}, which is spoken by {', '.join(speakers)}")

    def seats(self, step: Next, cast: Cast) -> list[tuple[Ask, Seat]]:
        """Every (ask, agent seat) the step addresses, in ask order (an ask to a whole role
        fans out in seat order)."""
        default = self.phases[step.phase].roles[0]
        out = []
        for a in step.asks:
            role = a.role or default
            agents = list(cast.get(role, ()))
            if a.agent is not None:
                if a.agent not in agents:
                    raise TransitionError(f"protocol {self.name!r}: ask to agent {a.agent!r}, who does not play "
                                          f"{role!r} (its agents: {', '.join(agents) or 'none'})")
                out.append((a, Seat(role, agents.index(a.agent), a.agent)))
            elif a.seat is not None:
                if a.seat >= len(agents):
                    raise TransitionError(f"protocol {self.name!r}: ask to seat {a.seat} of role {role!r}, "
                                          f"which has {len(agents)} agent(s)")
                out.append((a, Seat(role, a.seat, agents[a.seat])))
            else:
                out.extend((a, Seat(role, i, agent)) for i, agent in enumerate(agents))
        return out

    def speakers(self, phase: str) -> tuple[str, ...]:
        return self.phases[phase].roles

    def parse_options(self, raw: dict | None) -> Options:
        return self.options.model_validate(raw or {})

    def training_for(self, role: str, kind: str | None = None) -> TrainSpec:
        """This protocol's declaration of ``role``'s training data (of ``kind``, if it has several)."""
        def learner(spec: TrainSpec) -> str:
            return spec.student if isinstance(spec, Distill) else spec.role

        matches = [s for s in self.train if learner(s) == role and kind in (None, s.kind)]
        if not matches:
            declared = ", ".join(f"{s.kind} for {learner(s)}" for s in self.train) or "nothing"
            raise ProtocolError(f"protocol {self.name!r} declares no training data for role {role!r}"
                                f"{f' of kind {kind!r}' if kind else ''}; it declares: {declared}")
        return matches[0]

    def check_bindings(self, cast: Cast) -> None:
        """Every role played by at least one agent, and no agent for a role the protocol lacks."""
        check_cast(f"protocol {self.name!r}", self.roles, cast)

    def draw(self, path: str) -> str:
        return draw(self.graph, f"protocol {self.name}", path)


def check_cast(what: str, roles: Sequence[str], cast: Cast) -> None:
    missing = [r for r in roles if not cast.get(r)]
    unknown = [r for r in cast if r not in roles]
    if missing:
        raise ProtocolError(f"{what}: role(s) {', '.join(missing)} have no agent; "
                            f"bind each of {', '.join(roles)} to an agent")
    if unknown:
        raise ProtocolError(f"{what} has no role(s) {', '.join(unknown)}; its roles are {', '.join(roles)}")


def validate(protocol: Protocol) -> None:
    """Refuse a protocol that could get stuck or that names what it does not define."""
    name = protocol.name
    then = {phase: spec.then for phase, spec in protocol.phases.items()}
    for phase, spec in protocol.phases.items():
        if not spec.roles:
            raise ProtocolError(f"protocol {name!r}: phase {phase!r} names no role to speak in it")
        for role in spec.roles:
            if role not in protocol.roles:
                raise ProtocolError(f"protocol {name!r}: phase {phase!r} is spoken by unknown role {role!r}")
    check_flow("phase", f"protocol {name!r}", protocol.first, then, protocol.graph, ProtocolError)
    for spec in protocol.train:
        roles = (spec.student, spec.teacher) if isinstance(spec, Distill) else (spec.role,)
        for role in roles:
            if role not in protocol.roles:
                raise ProtocolError(f"protocol {name!r}: training spec names unknown role {role!r}")
        for phase in spec.phases:
            if phase not in protocol.phases:
                raise ProtocolError(f"protocol {name!r}: training spec names unknown phase {phase!r}")
