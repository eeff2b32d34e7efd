"""The log's records: one step record per episode step, holding the turns it consumed.

Written and read through these definitions only (runner, resume, replay, training data, summary).
A turn keeps the prompt the protocol built (``asked``) next to the prompt as sent (``prompt``:
the agent's persona, sampling settings and seed applied), so a log answers both "what did the
protocol ask" and "what exactly did the model see".
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from academe.agents.records import ChatMessage, Prompt, Record, Reply
from academe.protocols.engine import Answer, Outcome, Protocol

LOG_FORMAT = 3  # the version of these records on disk; older run folders are refused with a message
READABLE_FORMATS = (2, 3)  # 2: every record holds its whole state; 3: a record may hold a patch instead


class AskRecord(Record):
    """One pending ask, durable before it is sent: who is asked, and the prompt built and sent."""

    role: str
    seat: int = Field(ge=0)
    agent: str
    asked: tuple[ChatMessage, ...]
    prompt: Prompt


class TurnRecord(AskRecord):
    """An answered ask: the ask (``index`` among the step's asks), the reply, and when."""

    index: int = Field(ge=0)
    reply: Reply
    started: float
    ended: float

    def answer(self) -> Answer:
        return Answer(role=self.role, seat=self.seat, agent=self.agent, reply=self.reply)


class StepRecord(Record):
    """One episode step: the turns it consumed, the state it led to, then its asks or its outcome.

    ``state`` is the protocol's state record; read back it is a dict (``episode_state`` parses it).
    On disk a record may hold ``patch`` instead: the state's changes since the episode's previous
    step (so a dialogue of n turns costs O(n) bytes, not O(n^2)); reading puts the whole state back.
    ``phase`` is the phase whose answers the step consumed (``<start>`` for an episode's first).
    """

    run: str
    episode: int = Field(ge=0)
    step: int = Field(ge=0)
    round: int | None = None
    protocol: str
    phase: str
    turns: tuple[TurnRecord, ...] = ()
    state: Any = None
    patch: dict[str, Any] | None = None
    notes: dict[str, str] = Field(default_factory=dict)
    time: float
    next_phase: str | None = None
    asks: tuple[AskRecord, ...] = ()
    outcome: Outcome | None = None

    def episode_state(self, protocol: Protocol):
        return self.state if isinstance(self.state, protocol.state) else protocol.state.model_validate(self.state)

    @property
    def task(self) -> dict:
        """The episode's task, as logged (a dict)."""
        state = self.state if isinstance(self.state, dict) else self.state.model_dump(mode="json")
        return state["task"]
