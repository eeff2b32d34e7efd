"""Kill the driver with SIGKILL mid-run, resume, and get exactly the transcripts of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from academe.simulation.config import dump_config
from academe.simulation.log import read_steps
from academe.simulation.simulate import resume_run, start_run
from simulations import config, tiny_student, transcripts

ACADEME = str(Path(sys.executable).with_name("academe"))


def logged_steps(out_dir: Path) -> int:
    return sum(1 for p in out_dir.glob("*/log/live-*.jsonl") for _ in open(p))


@pytest.mark.parametrize("shards", [1, 2])
def test_killed_and_resumed_run_equals_an_uninterrupted_one(ray_local, tmp_path, tiny_model, shards):
    """With two runner shards, each left its own unfinished segment: resume recovers both."""
    cfg = config(tmp_path / "killed", student=tiny_student(tiny_model), episodes=24, concurrency=6, shards=shards)
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(dump_config(cfg))
    driver = subprocess.Popen([ACADEME, "run", str(cfg_file), "--quiet"], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    try:
        deadline = time.time() + 240
        while logged_steps(tmp_path / "killed") < 40 and time.time() < deadline:
            assert driver.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
        driver.wait()
    (run_dir,) = (tmp_path / "killed").iterdir()
    before = list(read_steps(run_dir))
    assert 40 <= len(before) and not (run_dir / "summary.json").exists()
    finished_before = sum(r.outcome is not None for r in before)
    assert finished_before < 24  # it really was cut short

    summary = resume_run(run_dir)
    assert summary["episodes"] == 24 and summary["errors"] == 0

    reference, _ = start_run(cfg.replace(run=cfg.run.replace(out_dir=str(tmp_path / "whole"), shards=1)))
    assert transcripts(run_dir) == transcripts(reference)
    steps = [(r.episode, r.step) for r in read_steps(run_dir)]
    assert len(steps) == len(set(steps))  # nothing duplicated
