"""A run folder's own files: the config it runs, the config it started with, and its lock.

``config.yaml`` is what ``resume`` reads; ``started.json`` keeps the config as the run began, so a
resume after someone edited ``config.yaml`` is refused instead of mixing two configurations in one
log (only where the run may go on: Ray placement and concurrency may change). ``run.lock`` is held
(``flock``) by the one process writing the folder, so a second ``resume`` of a running run is
refused; the lock goes with the process, even one killed by SIGKILL.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pydantic import ValidationError

from academe.simulation.config import ConfigError, SimulationConfig, dump_config

CONFIG_FILE, SUMMARY_FILE, STARTED_FILE, LOCK_FILE = "config.yaml", "summary.json", "started.json", "run.lock"
MAY_CHANGE = ("ray", "run.concurrency", "run.shards")  # what a resume may run differently: where, how many at once


class RunInUse(RuntimeError):
    """Another process is writing this run folder."""


def write_config(folder: Path, config: SimulationConfig) -> None:
    (folder / CONFIG_FILE).write_text(dump_config(config))
    (folder / STARTED_FILE).write_text(json.dumps({"config": config.model_dump(mode="json")}, indent=1))


def changed_fields(started: object, now: object, path: str = "") -> list[str]:
    """Every leaf path where two config dumps differ, as 'path: before -> now'."""
    if isinstance(started, dict) and isinstance(now, dict):
        return [change for key in dict.fromkeys([*started, *now])
                for change in changed_fields(started.get(key), now.get(key), f"{path}.{key}" if path else key)]
    return [] if started == now else [f"{path}: {json.dumps(started)} -> {json.dumps(now)}"]


def check_unchanged(run_dir: Path, config: SimulationConfig) -> None:
    """Refuse to resume with a config.yaml edited since the run started (beyond MAY_CHANGE)."""
    started_file = run_dir / STARTED_FILE
    if not started_file.is_file():
        return  # a folder from before this file existed: nothing to compare with
    started = json.loads(started_file.read_text())["config"]
    try:  # read with today's fields: a field academe gained since then is at its default on both sides
        started = SimulationConfig.model_validate(started).model_dump(mode="json")
    except ValidationError:
        pass  # a field since removed or changed: compare the dumps as written
    changes = [c for c in changed_fields(started, config.model_dump(mode="json"))
               if not c.startswith(tuple(f"{field}." for field in MAY_CHANGE) + tuple(f"{f}:" for f in MAY_CHANGE))]
    if changes:
        raise ConfigError(f"{run_dir / CONFIG_FILE} was edited since the run started ({'; '.join(changes)}); "
                          "a run goes on with the config it started with (only ray.*, run.concurrency and run.shards may "
                          "change): undo the edit, or start a new run with the new config")


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock while writing it; RunInUse if another process holds it."""
    with open(run_dir / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RunInUse(f"{run_dir} is being written by {holder}; wait for it to finish (or stop it), "
                           "then resume") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"academe process {os.getpid()}")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
