"""Scripted agents that misbehave on purpose, imported by Ray workers (tests put this folder on PYTHONPATH)."""

import os
from pathlib import Path

from academe.agents.records import Prompt
from academe.protocols.oracles import guessing_student


def dies_once_student(prompt: Prompt) -> str:
    """Kills its own process the first time it is called after ACADEME_TEST_MARKER is armed."""
    marker = Path(os.environ["ACADEME_TEST_MARKER"])
    if marker.exists():
        marker.unlink()
        os._exit(1)
    return guessing_student(prompt)


def teacher_that_fails_sometimes(prompt: Prompt) -> str:
    if prompt.task is not None and prompt.task.id.endswith(("-3", "-7")):
        raise RuntimeError("this teacher cannot handle that task")
    return "(probing) What did you get for the first step?"


def sleepy(prompt: Prompt) -> str:
    """Busy for a while: a receiver that cannot acknowledge in time."""
    import time

    time.sleep(float(os.environ.get("ACADEME_TEST_SLEEP", "4")))
    return "zzz"


def coin_grader(text: str, task) -> bool:
    """Right when the reply has an even length: tiny random models then get some right, some wrong."""
    return len(text) % 2 == 0


def persona_speaker(prompt: Prompt) -> str:
    """Says who it is (its persona) and which answer it gives, so a judge's view can be checked."""
    persona = prompt.messages[0].content if prompt.messages[0].role == "system" else "nobody"
    return f"{persona} says {prompt.seed % 97}"


def judge_that_repeats(prompt: Prompt) -> str:
    return "I heard: " + prompt.messages[-1].content


def length_judge(prompt: Prompt) -> str:
    """Scores an answer by its length, 1-10 (a stand-in for an LLM judge)."""
    answer = prompt.messages[-1].content.split("Answer: ", 1)[1].split("\n")[0]
    return f"Score: {max(1, min(10, len(answer) // 4))}"


def rambler(prompt: Prompt) -> str:
    return "word " * (prompt.seed % 9 + 1)


def markup_student(prompt: Prompt) -> str:
    """Replies with markup and a script around its guess: a page showing dialogues must show them as text."""
    return "<script>alert(1)</script><b>x</b> <!--<script> " + guessing_student(prompt)


def never_right(prompt: Prompt) -> str:
    """A student who never gets there: dialogues run to their last turn."""
    return "I think the answer is 12345."


def always_probing(prompt: Prompt) -> str:
    return "(probing) Check your numbers and try again."


def leaks_its_key(prompt: Prompt) -> str:
    """Fails like an HTTP client whose error quotes the request, key and all."""
    raise ConnectionError(f"POST https://api.example/v1/chat refused, headers "
                          f"{{'Authorization': 'Bearer {os.environ['ACADEME_FAKE_API_KEY']}'}}")


class ShoutingBackend:
    """A user's own kind of backend (config: kind: agents_for_tests:shouting_backend): answers each
    prompt with its last message in capitals."""

    version = 0

    def __init__(self, path: str):
        self.model_name = f"shout:{path}"

    def generate(self, prompts):
        from academe.agents.records import Reply

        return [Reply(text=p.messages[-1].content.upper(), prompt_tokens=0, completion_tokens=1,
                      finish_reason="stop", model=self.model_name, model_version=self.version, latency_s=0.0)
                for p in prompts]


def shouting_backend(spec) -> ShoutingBackend:
    return ShoutingBackend(spec.path)


def backend_out_of_memory(spec):
    """A user's backend whose engine cannot start (config: kind: agents_for_tests:backend_out_of_memory)."""
    raise RuntimeError(f"CUDA out of memory: {spec.path} needs 80.00 GiB, 0.00 GiB free")


def runtime_env_marker(prompt) -> str:
    """Says what ``ray.runtime_env`` set in the actor's environment."""
    import os

    return f"marker={os.environ.get('ACADEME_RUNTIME_ENV_MARK', 'unset')}"
