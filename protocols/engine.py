"""The protocol engine: explicit episode state, phases as a checked graph, pure step functions.

A protocol is data plus pure functions. ``start(task, options)`` gives the first step; each phase
names the role that speaks in it, the function that turns ``(state, replies)`` into the next step,
and the phases it may lead to. A step is ``Next`` (new state, the next phase, the prompts for its
role) or ``Done`` (final state and outcome). The runner owns Ray, batching, logging and resume, so a
protocol file never touches them; because every state is a frozen, serialisable record, any episode
can be checkpointed, resumed, forked and replayed at any step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import networkx as nx
from pydantic import Field, SerializeAsAny

from academe.agents.records import ChatMessage, Record, Reply, Task

START, END = "<start>", "<end>"


class EpisodeState(Record):
    """Base of every protocol's episode state: the task and anything needed to continue."""

    task: Task


class Options(Record):
    """Base of a protocol's options (config ``protocol.options``); none by default."""


class Outcome(Record):
    """How an episode ended: success, a score, rewards per role, and protocol metrics."""

    solved: bool
    score: float = 0.0
    rewards: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    error: str | None = None


class Next(Record):
    """Continue: ``phase`` is next, and its role answers each of ``prompts`` (one turn each)."""

    state: SerializeAsAny[EpisodeState]
    phase: str
    prompts: tuple[tuple[ChatMessage, ...], ...] = Field(min_length=1)
    notes: dict[str, str] = Field(default_factory=dict)


class Done(Record):
    """The episode is over."""

    state: SerializeAsAny[EpisodeState]
    outcome: Outcome
    notes: dict[str, str] = Field(default_factory=dict)


Step = Next | Done


def ask(phase: str, state: EpisodeState, *messages: ChatMessage, notes: dict | None = None) -> Next:
    """One prompt for the role of ``phase``: the common case, spelled short."""
    return Next(state=state, phase=phase, prompts=(tuple(messages),), notes=notes or {})


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
    role: str
    on_reply: Callable[[Any, tuple[Reply, ...]], Step]
    then: tuple[str, ...]
    doc: str = ""


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
    graph: nx.DiGraph = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "graph", phase_graph(self))
        validate(self)

    # -- running --
    def begin(self, task: Task, options: Options | None = None) -> Step:
        step = self.start(task, options if options is not None else self.options())
        self._check(START, step)
        return step

    def step(self, phase: str, state: EpisodeState, replies: Sequence[Reply]) -> Step:
        if phase not in self.phases:
            raise TransitionError(f"protocol {self.name!r} has no phase {phase!r}")
        nxt = self.phases[phase].on_reply(state, tuple(replies))
        self._check(phase, nxt)
        return nxt

    def _check(self, source: str, step: Step) -> None:
        target = END if isinstance(step, Done) else step.phase
        if not self.graph.has_edge(source, target):
            allowed = ", ".join(sorted(self.graph.successors(source)))
            raise TransitionError(
                f"protocol {self.name!r}: phase {source!r} went to {target!r}; allowed: {allowed}"
            )
        if not isinstance(step.state, self.state):
            raise TransitionError(
                f"protocol {self.name!r}: phase {source!r} returned a {type(step.state).__name__}, "
                f"not a {self.state.__name__}"
            )

    def role_of(self, phase: str) -> str:
        return self.phases[phase].role

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

    def check_bindings(self, bound: dict[str, str]) -> None:
        """Every role bound to an agent, and no binding for a role the protocol lacks."""
        missing = [r for r in self.roles if r not in bound]
        unknown = [r for r in bound if r not in self.roles]
        if missing:
            raise ProtocolError(
                f"protocol {self.name!r}: role(s) {', '.join(missing)} have no agent; "
                f"bind each of {', '.join(self.roles)} to an agent"
            )
        if unknown:
            raise ProtocolError(
                f"protocol {self.name!r} has no role(s) {', '.join(unknown)}; "
                f"its roles are {', '.join(self.roles)}"
            )


def phase_graph(protocol: Protocol) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from([START, END])
    for phase, spec in protocol.phases.items():
        graph.add_node(phase, role=spec.role)
    graph.add_edges_from((START, p) for p in protocol.first)
    for phase, spec in protocol.phases.items():
        graph.add_edges_from((phase, target) for target in spec.then)
    return graph


def validate(protocol: Protocol) -> None:
    """Refuse a protocol that could get stuck or that names what it does not define."""
    name, graph = protocol.name, protocol.graph
    known = set(protocol.phases) | {END}
    for source, targets in [(START, protocol.first)] + [(p, s.then) for p, s in protocol.phases.items()]:
        for target in targets:
            if target not in known:
                raise ProtocolError(f"protocol {name!r}: phase {source!r} leads to unknown phase {target!r}")
    for phase, spec in protocol.phases.items():
        if spec.role not in protocol.roles:
            raise ProtocolError(f"protocol {name!r}: phase {phase!r} is spoken by unknown role {spec.role!r}")
    reachable = nx.descendants(graph, START)
    unreachable = sorted(set(protocol.phases) - reachable)
    if unreachable:
        raise ProtocolError(f"protocol {name!r}: phase(s) {', '.join(unreachable)} cannot be reached from the start")
    can_finish = nx.ancestors(graph, END)
    stuck = sorted(set(protocol.phases) - can_finish)
    if stuck:
        raise ProtocolError(f"protocol {name!r}: from phase(s) {', '.join(stuck)} the episode can never end")
    for spec in protocol.train:
        roles = (spec.student, spec.teacher) if isinstance(spec, Distill) else (spec.role,)
        for role in roles:
            if role not in protocol.roles:
                raise ProtocolError(f"protocol {name!r}: training spec names unknown role {role!r}")
        for phase in spec.phases:
            if phase not in protocol.phases:
                raise ProtocolError(f"protocol {name!r}: training spec names unknown phase {phase!r}")


def draw(protocol: Protocol, path: str) -> str:
    """Write the phase graph as a picture (PNG/SVG by extension); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graph = protocol.graph
    layout = nx.spring_layout(graph, seed=0)
    labels = {n: n if n in (START, END) else f"{n}\n({graph.nodes[n]['role']})" for n in graph}
    colors = ["#dddddd" if n in (START, END) else "#a6cee3" for n in graph]
    fig, axis = plt.subplots(figsize=(6, 4))
    nx.draw_networkx(graph, layout, ax=axis, labels=labels, node_color=colors, node_size=2600,
                     font_size=8, arrowsize=16, connectionstyle="arc3,rad=0.12")
    axis.set_title(f"protocol {protocol.name}")
    axis.axis("off")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
