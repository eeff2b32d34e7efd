"""Model actors: one per model, serving every agent bound to it, on Ray or in this process.

Agents are cheap records (persona, sampling); the model is the heavy part, loaded once in a
``ModelServer``. Eight student personas on one base model therefore cost one model in memory, and
their turns can share one batch. ``ModelPool`` builds the servers from flat specs and hands out
awaitable calls, so the runner is the same code with Ray and without it (``use_ray=False``, for
debugging in one process).
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Sequence

from pydantic import TypeAdapter

from academe.agents.backends.base import AsyncBackend, ModelSpec, TrainableBackend, load_backend
from academe.agents.records import Prompt, Reply
from academe.agents.redaction import redact

# Batches cross to a model actor as JSON bytes, encoded and parsed by pydantic-core (Rust): Ray
# would otherwise pickle every record field by field, which cost more than the scripted agents.
PROMPTS = TypeAdapter(list[Prompt])
REPLIES = TypeAdapter(list[Reply])


def to_wire(state: dict) -> dict:
    """Tensors as numpy arrays where possible: Ray's object store hands numpy arrays to receivers
    without a copy (torch tensors are pickled and copied)."""
    import torch

    numpy_dtypes = (torch.float32, torch.float16, torch.float64, torch.int64, torch.int32)
    return {k: v.detach().cpu().contiguous().numpy() if v.dtype in numpy_dtypes else v for k, v in state.items()}


def from_wire(state: dict) -> dict:
    """The inverse of ``to_wire``; arrays stay read-only views, as the model copies them anyway."""
    import warnings

    import numpy as np
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only arrays from the object store
        return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}


class ModelStartError(RuntimeError):
    """A model's actor or backend failed to start (out of memory, a missing engine, a bad file)."""

    def __init__(self, model: str, message: str):
        super().__init__(message)
        self.model = model


def root_cause(exc: BaseException) -> str:
    """The innermost 'SomeError: message' line of an error (a Ray actor's death quotes the whole
    traceback of its constructor)."""
    lines = [line.strip() for line in str(exc).splitlines()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b.*:", line)]
    return redact((errors[-1] if errors else f"{type(exc).__name__}: {lines[0] if lines else ''}")[:500])


class ModelServer:
    """Hosts one backend; answers whole batches and swaps weights between batches."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.backend = load_backend(spec)

    def info(self) -> dict:
        """Which model, which version, and where it runs (Ray node id, process)."""
        node = group = None
        try:
            import ray

            if ray.is_initialized():
                node = ray.get_runtime_context().get_node_id()
                group = ray.get_runtime_context().get_placement_group_id()
        except ImportError:
            pass
        return {"model": self.backend.model_name, "version": self.backend.version, "pid": os.getpid(), "node": node,
                "placement_group": group}

    def generate(self, prompts: Sequence[Prompt], adapter: str | None = None) -> list[Reply]:
        if adapter is not None:
            raise TypeError(f"model {self.backend.model_name!r} hosts no adapter models (asked for {adapter!r})")
        return self.backend.generate(prompts)

    def generate_json(self, prompts: bytes, adapter: str | None = None) -> bytes:
        """``generate`` with the batch and its replies as JSON (what a Ray call sends)."""
        return REPLIES.dump_json(self.generate(PROMPTS.validate_json(prompts), adapter))

    def version(self) -> int:
        return self.backend.version

    def close(self) -> None:
        """Release what the backend holds outside this process (a vLLM engine's workers)."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def load_state_dict(self, state: dict, version: int) -> int:
        """Swap weights; returns the new version as the acknowledgement."""
        self._trainable().load_state_dict(from_wire(state), version)
        return version

    def load_adapter(self, adapter: dict, lora: dict, version: int, name: str | None = None) -> int:
        """Load a LoRA adapter over the base weights (for ``name``, a model this one hosts, or for
        this model itself); returns the new version as the acknowledgement."""
        hosted = {"name": name} if name is not None else {}  # backends that host no adapters take no name
        self._trainable().load_adapter(from_wire(adapter), lora, version, **hosted)
        return version

    def weight_sync_info(self) -> dict:
        """For a trainer that sends weights over NCCL (a vLLM engine made for it)."""
        return self._nccl().weight_sync_info()

    def weight_transfer(self, step: str, payload: dict | None, version: int) -> int:
        """One step of an NCCL weight update (trainers/nccl_sync.py drives them)."""
        self._nccl().weight_transfer(step, payload, version)
        return version

    def _nccl(self):
        if not hasattr(self.backend, "weight_transfer"):
            raise TypeError(f"model {self.backend.model_name!r} takes no weights over NCCL")
        return self.backend

    def _trainable(self) -> TrainableBackend:
        if not isinstance(self.backend, TrainableBackend):
            raise TypeError(f"model {self.backend.model_name!r} cannot receive weights")
        return self.backend


class AsyncModelServer(ModelServer):
    """A ``ModelServer`` for an engine that batches continuously: as a Ray async actor it serves
    several batches at once (weight swaps and the like still run one at a time)."""

    async def generate_json(self, prompts: bytes, adapter: str | None = None) -> bytes:
        return REPLIES.dump_json(await self.agenerate(PROMPTS.validate_json(prompts), adapter))

    async def agenerate(self, prompts: Sequence[Prompt], adapter: str | None = None) -> list[Reply]:
        if adapter is None:
            return await self.backend.agenerate(prompts)
        return await self.backend.agenerate(prompts, adapter=adapter)


class ModelPool:
    """One ``ModelServer`` per named model; Ray actors when ``use_ray``, else local objects. A
    hosted model (a LoRA adapter) has no server of its own: its batches go to its host's server,
    tagged with its name."""

    def __init__(self, specs: dict[str, ModelSpec], use_ray: bool = True):
        self.specs = dict(specs)
        self.use_ray = use_ray
        self.owner = True  # it started the servers, and stops them
        self.servers: dict[str, object] = {}
        try:
            for name, spec in self.specs.items():
                if not spec.backend.hosted:
                    self.servers[name] = self._start(name, spec)
            if use_ray:
                import ray

                for name, server in self.servers.items():
                    self._started(name, lambda: ray.get(server.info.remote()))
        except BaseException:
            self.shutdown()  # the models that did start (an engine holds processes and memory)
            raise

    def _start(self, name: str, spec: ModelSpec):
        server = AsyncModelServer if spec.backend.in_flight > 1 else ModelServer
        if not self.use_ray:
            return self._started(name, lambda: server(spec))
        import ray

        from academe.simulation.placement import actor_options

        actor = ray.remote(server).options(
            num_cpus=spec.num_cpus,
            num_gpus=spec.num_gpus,
            max_restarts=1,
            max_task_retries=0,
            **actor_options(spec.placement, spec.resources),
        )
        return actor.remote(spec)

    @classmethod
    def attached(cls, specs: dict[str, ModelSpec], servers: dict[str, object]) -> "ModelPool":
        """A pool over Ray model actors that another process started and will stop (a runner
        shard's view of the run's models)."""
        pool = cls.__new__(cls)
        pool.specs, pool.use_ray, pool.owner, pool.servers = dict(specs), True, False, dict(servers)
        return pool

    def _started(self, name: str, start):
        """``start()``, or a ModelStartError naming the model and the root cause (not Ray's
        whole traceback)."""
        try:
            return start()
        except Exception as exc:
            spec = self.specs[name]
            raise ModelStartError(name, f"model {name!r} ({spec.kind}, {spec.path}) did not start: "
                                  f"{root_cause(exc)}") from None

    def server(self, model: str):
        """The server that answers ``model`` (its host's, for a hosted model)."""
        spec = self.specs.get(model)
        try:
            return self.servers[spec.path if spec is not None and spec.backend.hosted else model]
        except KeyError:
            raise KeyError(f"no model named {model!r}; models: {', '.join(self.specs)}") from None

    def adapter(self, model: str) -> str | None:
        """The adapter name a batch for ``model`` carries to its host (None: not hosted)."""
        return model if self.specs[model].backend.hosted else None

    async def generate(self, model: str, prompts: Sequence[Prompt]) -> list[Reply]:
        """Answer a batch on the named model; awaitable with or without Ray."""
        server, adapter = self.server(model), self.adapter(model)
        if self.use_ray:
            return REPLIES.validate_json(await server.generate_json.remote(PROMPTS.dump_json(list(prompts)), adapter))
        if isinstance(server.backend, AsyncBackend):
            return await server.agenerate(list(prompts), adapter)
        return await asyncio.to_thread(server.generate, list(prompts), adapter)

    def call(self, model: str, method: str, *args):
        """Call a server method synchronously (info, version, load_state_dict)."""
        server = self.server(model)
        if self.use_ray:
            import ray

            return ray.get(getattr(server, method).remote(*args))
        return getattr(server, method)(*args)

    def describe(self) -> dict[str, dict]:
        """``info()`` of every server, by model name."""
        return {name: self.call(name, "info") for name in self.servers}

    def shutdown(self) -> None:
        """Close every backend (an engine's processes hold shared memory), then stop the actors."""
        if not self.owner:
            pass
        elif self.use_ray:
            import ray

            closing = [server.close.remote() for server in self.servers.values()]
            ray.wait(closing, num_returns=len(closing), timeout=30)
            for server in self.servers.values():
                ray.kill(server)
        else:
            for server in self.servers.values():
                server.close()
        self.servers.clear()
