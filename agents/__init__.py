"""Typed records, agents, and the model backends behind one narrow interface."""

from academe.agents.agent import AgentSpec
from academe.agents.backends.base import Backend, ModelSpec, TrainableBackend, load_backend
from academe.agents.records import (
    ChatMessage,
    Prompt,
    Reply,
    Sampling,
    SubStep,
    Task,
    TurnId,
)

__all__ = [
    "AgentSpec", "Backend", "ChatMessage", "ModelSpec", "Prompt", "Reply", "Sampling", "SubStep",
    "Task", "TrainableBackend", "TurnId", "load_backend",
]
