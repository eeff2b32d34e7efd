"""Held-out accuracy: a role answers each held-out task's opening prompt, unaided and greedy."""

from __future__ import annotations

from typing import Sequence

from academe.agents.agent import AgentSpec
from academe.agents.records import Sampling, Task
from academe.protocols.engine import Next, Options, Protocol
from academe.protocols.grading import grade
from academe.simulation.actors import ModelPool


def opening_prompts(protocol: Protocol, options: Options, agent: AgentSpec, tasks: Sequence[Task],
                    check_role: bool = True):
    """The prompt the protocol opens each episode with, as ``agent`` would get it, made greedy.
    ``check_role``: refuse a protocol that opens with another role than the agent's (a program
    names the protocol whose opening prompt it wants, whatever the role is called there)."""
    greedy = agent.replace(sampling=Sampling(temperature=0.0, max_new_tokens=agent.sampling.max_new_tokens))
    prompts = []
    for task in tasks:
        first = protocol.begin(task, options)
        opener = (first.asks[0].role or protocol.speakers(first.phase)[0]) if isinstance(first, Next) else None
        if opener is None or (check_role and opener != agent.role):
            raise ValueError(f"protocol {protocol.name!r} does not open with the {agent.role!r} role; "
                             "held-out evaluation asks the opening question of that role")
        prompts.append(greedy.prompt(first.asks[0].messages, seed=0, task=task.base()))
    return prompts


async def accuracy(pool: ModelPool, agent: AgentSpec, protocol: Protocol, options: Options,
                   tasks: Sequence[Task], batch: int = 32, check_role: bool = True) -> tuple[float | None, int]:
    """(share of the gradable tasks answered correctly, or None if none is gradable; the model
    version that answered)."""
    prompts = opening_prompts(protocol, options, agent, tasks, check_role)
    replies = []
    for i in range(0, len(prompts), batch):
        replies += await pool.generate(agent.model, prompts[i:i + batch])
    verdicts = [grade(t, r.text) for r, t in zip(replies, tasks)]
    judged = [v for v in verdicts if v is not None]
    return (sum(judged) / len(judged) if judged else None), replies[-1].model_version
