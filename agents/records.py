"""The typed records that cross every boundary: messages, prompts, replies, tasks, identifiers.

All are frozen pydantic models with ``extra="forbid"`` so a misspelt field fails loudly, and all
round-trip through JSON losslessly (the dialogue log and Ray both rely on that).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_NEW_TOKENS_LIMIT = 32_768


class Record(BaseModel):
    """Base of every record: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def replace(self, **changes) -> "Record":
        """A copy with ``changes`` applied and validated (frozen records never mutate)."""
        # Nested records are already valid instances: pass them as they are instead of dumping.
        return type(self).model_validate({**self.__dict__, **changes})


RunId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")]
EpisodeId = Annotated[int, Field(ge=0)]
StepIndex = Annotated[int, Field(ge=0)]
AgentName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


class ChatMessage(Record):
    role: Literal["system", "user", "assistant"]
    content: str


class Sampling(Record):
    """How to decode. ``temperature == 0`` means greedy (deterministic)."""

    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(128, ge=1, le=MAX_NEW_TOKENS_LIMIT)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class SubStep(Record):
    """One reference sub-question of a worked solution and its answer, as written."""

    question: str
    answer: str


class Provenance(Record):
    """Where a task made during a run came from: the round, the task and episode it was made
    from, and the agent and model version that wrote it."""

    round: int = Field(ge=0)
    parent: str = Field(description="id of the task it was made from (e.g. the one the solver failed)")
    episode: int = Field(ge=0)
    agent: str
    model: str
    model_version: int = Field(ge=0)


class Task(Record):
    """A problem and how replies to it are judged.

    ``answer`` is the reference (``None``: an open instruction that a judge scores); ``grader``
    names how a reply is compared with it (``numeric``, ``exact``, ``none``, or a function
    ``module:function`` of ``(reply text, task)``). Oracle agents may also use the reference
    ``steps`` and ``solution``. Numbers are kept as they were written ("6,000", not "6E+3").
    """

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answer: str | None = Field(None, min_length=1)
    steps: tuple[SubStep, ...] = ()
    solution: str | None = None
    grader: str = Field("numeric", min_length=1)
    origin: Provenance | None = None

    def base(self) -> "Task":
        """This task as a plain ``Task`` (protocols may extend it with fields of their own)."""
        if type(self) is Task:
            return self
        return Task.model_validate({name: getattr(self, name) for name in Task.model_fields})


class Prompt(Record):
    """Everything a backend needs to produce one reply.

    ``task`` is ground truth for scripted (oracle) agents; model backends never show it to a model.
    """

    messages: tuple[ChatMessage, ...]
    sampling: Sampling = Sampling()
    seed: int = Field(0, ge=0, lt=2**63)
    task: Task | None = None

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, messages: tuple[ChatMessage, ...]) -> tuple[ChatMessage, ...]:
        if not messages:
            raise ValueError("a prompt needs at least one message (got none)")
        return messages


FinishReason = Literal["stop", "length", "error"]


class Reply(Record):
    """What an agent said, and exactly which model (and version of it) said it."""

    text: str
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    finish_reason: FinishReason
    model: str
    model_version: int = Field(ge=0)
    latency_s: float = Field(ge=0.0)
    error: str | None = None


class TurnId(Record):
    """Where a turn sits: run, episode, step within the episode, and the agent that spoke."""

    run: RunId
    episode: EpisodeId
    step: StepIndex
    agent: AgentName


class SFTExample(Record):
    """A training target for a prompt; ``weight`` scales its loss (e.g. by how useful it was)."""

    messages: tuple[ChatMessage, ...]
    target: str
    weight: float = Field(1.0, ge=0.0)
    episode: int | None = None
    step: int | None = None
    model_version: int | None = None


class PreferencePair(Record):
    """Two replies to one prompt, the chosen one better than the rejected one."""

    messages: tuple[ChatMessage, ...]
    chosen: str
    rejected: str
    task: str = ""
