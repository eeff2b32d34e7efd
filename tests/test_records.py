import pytest
from pydantic import ValidationError

from academe.agents import AgentSpec, ChatMessage, ModelSpec, Prompt, Reply, Sampling, SubStep, Task, TurnId

TASK = Task(id="t1", question="Ann has 3 apples and buys 4. How many?", answer="7",
            steps=(SubStep(question="How many after buying?", answer="7"),))
PROMPT = Prompt(messages=(ChatMessage(role="system", content="be kind"),
                          ChatMessage(role="user", content="hi ünïcode ✓")),
                sampling=Sampling(temperature=0.7, top_p=0.9, max_new_tokens=12), seed=2**40, task=TASK)
REPLY = Reply(text="7", prompt_tokens=10, completion_tokens=2, finish_reason="stop",
              model="m", model_version=3, latency_s=0.25)


@pytest.mark.parametrize("record", [TASK, PROMPT, REPLY, TurnId(run="r-1", episode=4, step=2, agent="teacher"),
                                    AgentSpec(name="s", role="student", model="base", persona="p"),
                                    ModelSpec(kind="scripted", path="a.b:c")])
def test_json_round_trip_is_lossless(record):
    assert type(record).model_validate_json(record.model_dump_json()) == record


def test_records_are_frozen_and_reject_unknown_fields():
    with pytest.raises(ValidationError):
        PROMPT.seed = 3
    with pytest.raises(ValidationError, match="extra"):
        Reply(**REPLY.model_dump(), tokens=3)


def test_prompt_without_messages_is_refused():
    with pytest.raises(ValidationError, match="at least one message"):
        Prompt(messages=())


@pytest.mark.parametrize("field,value", [("temperature", -0.1), ("temperature", 50.0), ("top_p", 0.0),
                                         ("top_p", 1.5), ("max_new_tokens", 0), ("max_new_tokens", 10**7)])
def test_absurd_sampling_settings_name_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        Sampling(**{field: value})


def test_unknown_backend_kind_lists_the_known_ones():
    with pytest.raises(ValidationError, match="unknown backend kind 'llamacpp'.*transformers, scripted"):
        ModelSpec(kind="llamacpp")


def test_agent_prompt_puts_persona_first_and_keeps_sampling():
    agent = AgentSpec(name="s", role="student", model="base", persona="You are a student.",
                      sampling=Sampling(max_new_tokens=5))
    prompt = agent.prompt([ChatMessage(role="user", content="2+2?")], seed=9)
    assert [m.role for m in prompt.messages] == ["system", "user"]
    assert prompt.sampling.max_new_tokens == 5 and prompt.seed == 9
