"""Weight publication: put the new weights in Ray's object store once, have every receiver load
them, and wait for each acknowledgement with a timeout. A receiver that fails or does not answer
keeps serving its old version; the report names it. Nothing waits forever.

This is the one-node path (object store). Engines that sync over NCCL (vLLM on GPUs) plug in
behind the same call: receivers, weights, version in; a PublishReport out.
"""

from __future__ import annotations

import time
from typing import Literal

from academe.agents.records import Record
from academe.simulation.actors import to_wire

What = Literal["full", "adapter"]


class PublishReport(Record):
    version: int
    what: What
    acknowledged: tuple[str, ...]
    failed: dict[str, str]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.failed


def publish(receivers: dict[str, object], weights: dict, version: int, what: What = "full",
            lora: dict | None = None, timeout_s: float = 60.0, hosted: dict[str, str] | None = None) -> PublishReport:
    """Send ``weights`` (a full or partial state dict, or a LoRA adapter) to Ray actor receivers;
    ``hosted`` names the adapter a receiver loads for a model it hosts."""
    hosted = hosted or {}
    import ray

    start = time.perf_counter()
    ref = ray.put(to_wire(weights))  # once, whatever the number of receivers; no per-parameter calls
    calls = {name: (actor.load_adapter.remote(ref, lora, version, hosted.get(name)) if what == "adapter"
                    else actor.load_state_dict.remote(ref, version)) for name, actor in receivers.items()}
    ready, _ = ray.wait(list(calls.values()), num_returns=len(calls), timeout=timeout_s)
    ready = set(ready)
    acknowledged, failed = [], {}
    for name, call in calls.items():
        if call not in ready:
            failed[name] = f"no acknowledgement within {timeout_s:g} s"
            continue
        _judge(name, lambda: ray.get(call), version, acknowledged, failed)
    return PublishReport(version=version, what=what, acknowledged=tuple(acknowledged), failed=failed,
                         seconds=time.perf_counter() - start)


def publish_local(receivers: dict[str, object], weights: dict, version: int, what: What = "full",
                  lora: dict | None = None, hosted: dict[str, str] | None = None) -> PublishReport:
    """The same for receivers in this process (runs without Ray)."""
    start = time.perf_counter()
    acknowledged, failed = [], {}
    for name, server in receivers.items():
        load = (lambda: server.load_adapter(weights, lora, version, (hosted or {}).get(name))) if what == "adapter" else (
            lambda: server.load_state_dict(weights, version))
        _judge(name, load, version, acknowledged, failed)
    return PublishReport(version=version, what=what, acknowledged=tuple(acknowledged), failed=failed,
                         seconds=time.perf_counter() - start)


def _judge(name: str, answer_of, version: int, acknowledged: list, failed: dict) -> None:
    """File a receiver under acknowledged (it answered with the new version) or failed (why not)."""
    try:
        answer = answer_of()
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return
    if answer == version:
        acknowledged.append(name)
    else:
        failed[name] = f"acknowledged version {answer!r}, expected {version}"
