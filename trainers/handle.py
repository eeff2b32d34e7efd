"""One trainable model's trainer for a whole run: train a phase, checkpoint it, publish it, and
replace a trainer process that died, at the last good checkpoint.

Schedules (every K episodes) and round-level programs both drive training through this, so a
model's trainer is created once per run and keeps its optimizer across phases.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Awaitable, Callable, Literal

from academe.agents.backends.base import ModelSpec
from academe.simulation.config import TrainingSection
from academe.trainers.publish import PublishReport, publish_local
from academe.trainers.trainer import (REPORT_FILE, CheckpointError, PhaseReport, Trainer, TrainingFailed,
                                      checkpoints)


class TrainerDied(RuntimeError):
    """The trainer process died during a phase; a new one was started at the last checkpoint."""


def trainer_died(exc: BaseException) -> bool:
    """Whether a call failed because the trainer's process is gone (not because the phase raised)."""
    from ray.exceptions import RayActorError

    return isinstance(exc, RayActorError)


class ModelTrainer:
    def __init__(self, model: str, spec: ModelSpec, section: TrainingSection, run_dir: Path, use_ray: bool):
        self.model, self.spec, self.section, self.use_ray = model, spec, section, use_ray
        self.checkpoints = Path(run_dir) / "checkpoints" / model
        self.trainer = self._new_trainer()
        self.version = 0
        self.set_aside: list[str] = []  # corrupt checkpoints passed over by restore()

    def _new_trainer(self):
        if not self.use_ray:
            return Trainer(self.spec, self.section.settings, self.section.threads)
        import ray

        from academe.simulation.placement import actor_options

        actor = ray.remote(Trainer).options(num_cpus=self.section.num_cpus, num_gpus=self.section.num_gpus,
                                            max_concurrency=2,  # a second thread answers status()
                                            **actor_options(self.section.placement, self.section.resources))
        return actor.remote(self.spec, self.section.settings, self.section.threads)

    async def call(self, method: str, *args):
        if self.use_ray:
            return await getattr(self.trainer, method).remote(*args)
        return await asyncio.to_thread(getattr(self.trainer, method), *args)

    async def restore(self) -> Path | None:
        """Load the newest checkpoint that loads (a resumed run); returns it. A corrupt one is
        set aside (renamed ``*.corrupt``, noted in ``set_aside``) and the one before it is tried."""
        for checkpoint in reversed(checkpoints(self.checkpoints)):
            try:
                self.version = await self.call("load", checkpoint)
                return checkpoint
            except CheckpointError as exc:
                checkpoint.rename(checkpoint.with_name(checkpoint.name + ".corrupt"))
                self.set_aside.append(str(exc))
        if self.set_aside:
            raise CheckpointError(f"no checkpoint of {self.model} loads: {'; '.join(self.set_aside)}")
        return None

    def saved_report(self, version: int) -> dict | None:
        """The report saved with the checkpoint of ``version``, if that checkpoint exists."""
        path = self.checkpoints / f"v{version:05d}" / REPORT_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    async def train(self, kind: Literal["sft", "dpo"], data: list,
                    on_status: Callable[[dict], Awaitable[None] | None] | None = None,
                    from_base: bool = False) -> PhaseReport:
        """One phase; raises TrainingFailed (weights restored) or TrainerDied (trainer replaced)."""
        method = "train_sft" if kind == "sft" else "train_dpo"
        try:
            report = await self._watched(self.call(method, data, None, from_base), on_status)
        except Exception as exc:
            if not self.use_ray or isinstance(exc, TrainingFailed) or not trainer_died(exc):
                raise
            # the trainer process itself died (Ray's memory monitor kills one that uses too much)
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            self.trainer = self._new_trainer()
            await self.restore()
            raise TrainerDied(f"the trainer died ({reason}); kept version {self.version}, started a new trainer") \
                from None
        self.version = report.version
        return report

    async def _watched(self, call, on_status):
        """Await a training call, passing its step, loss and samples/s to ``on_status`` each second."""
        task = asyncio.ensure_future(call)
        while not task.done():
            await asyncio.wait([task], timeout=1.0)
            if task.done() or on_status is None:
                continue
            status = await self.call("status")
            if status["phase"]:
                shown = on_status(status)
                if asyncio.iscoroutine(shown):
                    await shown
        return task.result()

    async def save(self, report: dict | None = None) -> Path:
        return await self.call("save", self.checkpoints, report)

    async def publish(self, pool) -> PublishReport:
        """Send the current version to the model's actor and wait for its acknowledgement."""
        receivers = {self.model: pool.server(self.model)}
        hosted = {self.model: self.model} if pool.adapter(self.model) else {}  # an adapter on its host's engine
        adapters = bool(hosted) or self.spec.backend.adapters  # an engine without adapters gets merged weights
        what = self.section.publish if adapters else "full"
        if self.use_ray and what == "full" and getattr(self.spec.settings(), "weight_sync", None) == "nccl":
            return await self.call("publish_nccl", receivers, self.section.publish_timeout_s)
        if self.use_ray:
            return await self.call("publish_to", receivers, what, self.section.publish_timeout_s, hosted)
        weights = self.trainer.weights(what)
        return publish_local(receivers, weights, self.version, what, self.trainer.lora_settings(), hosted)

    def status_line(self, status: dict) -> str:
        return (f"training {self.model} v{status['version'] + 1}: step {status['step']}/{status['steps']}, "
                f"loss {status['loss']:.3f}, {status['samples_per_s']:.1f} samples/s")
