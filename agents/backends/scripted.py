"""Scripted agents: a plain Python function of the prompt, for rule-based agents and oracles."""

from __future__ import annotations

import time
from typing import Callable, Sequence

from academe.agents.backends.base import ModelSpec
from academe.agents.imports import import_function
from academe.agents.records import Prompt, Reply
from academe.agents.redaction import redact

ScriptFn = Callable[[Prompt], str]


class ScriptedBackend:
    """Answers each prompt with ``fn(prompt)``; a function that raises yields an error reply."""

    version = 0

    def __init__(self, fn: ScriptFn, name: str | None = None):
        self.fn = fn
        self.model_name = name or f"scripted:{getattr(fn, '__name__', 'fn')}"

    @classmethod
    def from_path(cls, path: str, name: str | None = None) -> "ScriptedBackend":
        return cls(resolve_function(path), name=name or f"scripted:{path.rpartition(':')[2]}")

    def generate(self, prompts: Sequence[Prompt]) -> list[Reply]:
        return [self._answer(p) for p in prompts]

    def _answer(self, prompt: Prompt) -> Reply:
        start = time.perf_counter()
        try:
            text, error = self.fn(prompt), None
            if not isinstance(text, str):
                raise TypeError(f"{self.model_name} returned a {type(text).__name__}, not the reply's text (a str)")
        except Exception as exc:  # a broken rule must not take the whole batch down
            text, error = "", redact(f"{type(exc).__name__}: {exc}")
        return Reply(
            text=text,
            prompt_tokens=sum(len(m.content.split()) for m in prompt.messages),
            completion_tokens=len(text.split()),
            finish_reason="error" if error else "stop",
            model=self.model_name,
            model_version=self.version,
            latency_s=time.perf_counter() - start,
            error=error,
        )


def resolve_function(path: str) -> ScriptFn:
    """Import ``"package.module:function"``, with an error that says what was expected."""
    return import_function(path, "scripted agent path")


def load_scripted(spec: ModelSpec) -> ScriptedBackend:
    return ScriptedBackend.from_path(spec.path, name=spec.name)


def check_scripted(spec: ModelSpec) -> None:
    resolve_function(spec.path)
