"""The default simulation as a user runs it: `academe run` with the shipped SmolLM2, then `academe replay`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from academe.simulation.log import read_messages

pytestmark = pytest.mark.slow
ACADEME = str(Path(sys.executable).with_name("academe"))


def academe(*args, cwd):
    return subprocess.run([ACADEME, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled", "COLUMNS": "200"})


def test_default_run_with_smollm2_then_replay(tmp_path):
    ran = academe("run", "--quiet", "--set", "run.episodes=4", "--set", "run.concurrency=4",
                  "--set", "agents.student.sampling.max_new_tokens=40", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "episodes" in ran.stdout and "solved" in ran.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["episodes"] == 4 and summary["errors"] == 0
    assert summary["models"]["smollm2"]["model"] == "SmolLM2-135M-Instruct"
    messages = read_messages(run_dir).to_pandas()
    student = messages[messages.role == "student"]
    assert (student.model == "SmolLM2-135M-Instruct").all() and student.reply.str.strip().str.len().gt(0).all()
    assert (messages[messages.role == "teacher"].model == "scripted:socratic_teacher").all()
    replayed = academe("replay", str(run_dir), "--episode", "0", cwd=tmp_path)
    assert replayed.returncode == 0 and "SmolLM2-135M-Instruct v0" in replayed.stdout
