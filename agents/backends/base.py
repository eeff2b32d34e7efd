"""The one narrow interface every model backend implements, and the spec that builds one."""

from __future__ import annotations

from typing import Literal, Protocol, Sequence, runtime_checkable

from pydantic import Field, model_validator

from academe.agents.records import Prompt, Record, Reply

BACKEND_KINDS = ("transformers", "scripted")


@runtime_checkable
class Backend(Protocol):
    """Turns a batch of prompts into a batch of replies, in order.

    A backend sees whole batches, never single prompts: batching across episodes is where the
    throughput comes from. Engines that batch by themselves (vLLM, HTTP servers) implement the same
    call by submitting every prompt at once and gathering the results.
    """

    model_name: str
    version: int

    def generate(self, prompts: Sequence[Prompt]) -> list[Reply]: ...


@runtime_checkable
class TrainableBackend(Backend, Protocol):
    """A backend whose weights can be read and replaced while it serves."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict, version: int) -> None: ...


class ModelSpec(Record):
    """What to load and where to run it; flat, so it can be handed to an actor as arguments.

    ``path``: ``"smollm2"`` (the shipped SmolLM2-135M-Instruct GGUF), an HF model folder or a
    ``.gguf`` file (transformers kind); ``"module:function"`` (scripted kind).
    """

    kind: Literal["transformers", "scripted"] = "transformers"
    path: str = "smollm2"
    name: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    num_cpus: float = Field(1.0, ge=0.0, le=1024)
    num_gpus: float = Field(0.0, ge=0.0, le=64)
    threads: int | None = Field(None, ge=1, le=1024, description="torch threads (default: num_cpus)")
    max_batch_size: int = Field(32, ge=1, le=4096)

    @model_validator(mode="before")
    @classmethod
    def _known_kind(cls, data):
        if isinstance(data, dict) and "kind" in data and data["kind"] not in BACKEND_KINDS:
            raise ValueError(
                f"unknown backend kind {data['kind']!r}; use one of {', '.join(BACKEND_KINDS)}"
            )
        return data

    @property
    def display_name(self) -> str:
        return self.name or self.path.rstrip("/").rsplit("/", 1)[-1]


def load_backend(spec: ModelSpec) -> Backend:
    """Build the backend a spec names (imports lazily: scripted agents never import torch)."""
    if spec.kind == "scripted":
        from academe.agents.backends.scripted import ScriptedBackend

        return ScriptedBackend.from_path(spec.path, name=spec.name)
    from academe.agents.backends.hf import TransformersBackend

    return TransformersBackend.from_spec(spec)
