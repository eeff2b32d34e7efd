"""Model actors on local Ray: whole batches per call, shared models, in-process mode."""

import asyncio

import pytest

from academe.agents import AgentSpec, ChatMessage, ModelSpec, Sampling
from academe.simulation.actors import ModelPool

QUESTIONS = [f"what is {i} plus {i}?" for i in range(6)]


def persona_prompts(agent, seed=0):
    return [agent.prompt([ChatMessage(role="user", content=q)], seed=seed + i) for i, q in enumerate(QUESTIONS)]


def test_agents_share_one_model_actor_and_batches_reach_the_backend(ray_local, tiny_model):
    pool = ModelPool({"base": ModelSpec(path=str(tiny_model), num_cpus=1)})
    try:
        polite = AgentSpec(name="polite", role="student", model="base", persona="Be polite.",
                           sampling=Sampling(max_new_tokens=6))
        terse = AgentSpec(name="terse", role="student", model="base", persona="Be terse.",
                          sampling=Sampling(max_new_tokens=6))
        batch = persona_prompts(polite) + persona_prompts(terse)
        replies = asyncio.run(pool.generate("base", batch))
        assert len(replies) == 12
        # one generate call for the whole batch: every reply reports the same batch latency
        assert len({r.latency_s for r in replies}) == 1
        # the personas reach the model: the two agents' prompts differ, so do some answers
        assert [r.text for r in replies[:6]] != [r.text for r in replies[6:]]
        info = pool.call("base", "info")
        assert info["model"] == "tiny-llama" and info["version"] == 0
    finally:
        pool.shutdown()


def test_in_process_pool_gives_the_same_greedy_replies_as_ray(ray_local, tiny_model):
    agent = AgentSpec(name="a", role="student", model="base", sampling=Sampling(max_new_tokens=6))
    batch = persona_prompts(agent)
    remote = ModelPool({"base": ModelSpec(path=str(tiny_model))})
    local = ModelPool({"base": ModelSpec(path=str(tiny_model))}, use_ray=False)
    try:
        on_ray = asyncio.run(remote.generate("base", batch))
        in_process = asyncio.run(local.generate("base", batch))
        assert [r.text for r in on_ray] == [r.text for r in in_process]
    finally:
        remote.shutdown()


def test_unknown_model_name_is_named(tiny_model):
    pool = ModelPool({"base": ModelSpec(kind="scripted", path="academe.agents.records:Task")}, use_ray=False)
    with pytest.raises(KeyError, match="no model named 'other'; models: base"):
        pool.server("other")
