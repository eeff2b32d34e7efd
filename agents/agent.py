"""An agent: a name, a role, a persona and sampling settings, bound to a model by name."""

from __future__ import annotations

from typing import Sequence

from academe.agents.records import AgentName, ChatMessage, Prompt, Record, Sampling, Task


class AgentSpec(Record):
    """Cheap to copy; the heavy part (the model) lives in a model actor that agents may share."""

    name: AgentName
    role: str
    model: str
    persona: str = ""
    sampling: Sampling = Sampling()

    def prompt(self, messages: Sequence[ChatMessage], seed: int, task: Task | None = None) -> Prompt:
        """The exact prompt the model will see: persona first, then the protocol's messages."""
        head = (ChatMessage(role="system", content=self.persona),) if self.persona else ()
        return Prompt(messages=head + tuple(messages), sampling=self.sampling, seed=seed, task=task)
