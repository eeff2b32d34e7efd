"""Weights from a trainer's GPU straight into a vLLM engine's GPUs over NCCL (a vllm model's
``options.weight_sync: nccl``), through vLLM's weight transfer engine.

One NCCL group joins the trainer (rank 0) and the engine's workers, made at the first publication
(a TCP rendezvous on the trainer's node). Each publication checks names and shapes against the
engine's model first, then the engine drains its requests, receives the weights broadcast in
packed buckets, resets its prefix cache and stamps the version (``VLLMBackend.weight_transfer``).
Needs GPUs on both sides: ``scripts/gpu_check.sh`` runs it; CPU machines use the object store.
"""

from __future__ import annotations

import socket
import time
from typing import Callable

import torch
from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource
from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo, NCCLTrainerWeightTransferEngine

from academe.agents.backends.vllm_engine import check_shapes
from academe.trainers.publish import PublishReport


class EngineClient:
    """vLLM's weight-sync client protocol over academe's model actor: each call one step of the
    update, answered when the engine has done it."""

    def __init__(self, actor, timeout_s: float):
        self.actor, self.timeout_s, self.version = actor, timeout_s, 0

    def _step(self, step: str, payload: dict | None = None) -> None:
        import ray

        ray.get(self.actor.weight_transfer.remote(step, payload, self.version), timeout=self.timeout_s)

    def init_weight_transfer_engine(self, init_info: dict) -> None:
        self._step("init", init_info)

    def start_weight_update(self) -> None:
        self._step("start")

    def update_weights(self, update_info: dict) -> None:
        self._step("update", update_info)

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self._step("finish")


class TrainerWeights(WeightSource):
    """The weights of one publication, in the engine's dtype, on the trainer's GPU."""

    def __init__(self):
        self.state: dict[str, torch.Tensor] = {}

    def metadata(self) -> list[ParamMeta]:
        return [ParamMeta(name, t.dtype, tuple(t.shape)) for name, t in self.state.items()]

    def __iter__(self):
        yield from self.state.items()


class NCCLPublisher:
    """The trainer's NCCL links, one per receiving engine, kept for the whole run."""

    def __init__(self):
        self.links: dict[str, tuple[NCCLTrainerWeightTransferEngine, EngineClient, TrainerWeights, dict]] = {}

    def publish(self, receivers: dict, weights: Callable[[], dict], version: int, timeout_s: float) -> PublishReport:
        start = time.perf_counter()
        acknowledged, failed = [], {}
        state = weights()
        for name, actor in receivers.items():
            try:
                link, client, source, engine = self.links.get(name) or self._connect(name, actor, timeout_s)
                dtype = getattr(torch, engine["dtype"])
                tied_head = "lm_head.weight" not in engine["shapes"]  # the embedding carries it
                source.state = {k: v.to(dtype) for k, v in state.items() if not (tied_head and k == "lm_head.weight")}
                # checked here, before the engine is asked to receive: once it waits in the
                # broadcast, a refusal on its side would leave this side waiting for ever
                check_shapes(name, engine["shapes"], {k: tuple(v.shape) for k, v in source.state.items()})
                client.version = version
                link.send_weights()
                acknowledged.append(name)
            except Exception as exc:  # the engine keeps its weights; the trainer keeps its version
                failed[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
            finally:
                if name in self.links:
                    self.links[name][2].state = {}
        return PublishReport(version=version, what="full", acknowledged=tuple(acknowledged), failed=failed,
                             seconds=time.perf_counter() - start)

    def _connect(self, name: str, actor, timeout_s: float):
        import ray

        engine = ray.get(actor.weight_sync_info.remote(), timeout=timeout_s)  # shapes, dtype, workers
        client, source = EngineClient(actor, timeout_s), TrainerWeights()
        init = NCCLTrainerInitInfo(master_address=ray.util.get_node_ip_address(), master_port=free_port(),
                                   world_size=1 + engine["workers"], rank=0)
        link = NCCLTrainerWeightTransferEngine.trainer_init(init, client=client, source=source)
        self.links[name] = (link, client, source, engine)
        return self.links[name]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]
