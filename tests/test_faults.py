"""The fault suite: the driver killed (SIGKILL) at seeded points of a greedy run, once and twice in a
row; every resume must give the uninterrupted run's transcripts, with no turn lost or doubled."""

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from academe.simulation.config import RaySection, dump_config
from academe.simulation.log import read_steps
from academe.simulation.simulate import resume_run, start_run
from simulations import config, transcripts

ACADEME = str(Path(sys.executable).with_name("academe"))
EPISODES = 240
KILL_POINTS = sorted(random.Random(20261129).sample(range(10, 1000), 6))  # logged steps before the kill


def in_process(out_dir):
    cfg = config(out_dir, episodes=EPISODES, concurrency=16)
    return cfg.replace(ray=RaySection(enabled=False))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir, _ = start_run(in_process(tmp_path_factory.mktemp("whole")))
    return run_dir


def logged(out_dir: Path) -> int:
    return sum(1 for p in out_dir.glob("*/log/live-*.jsonl") for _ in open(p))


def kill_when(command: list[str], out_dir: Path, steps: int, sig: int = signal.SIGKILL) -> tuple[int, str]:
    """Signal the driver's process group once ``steps`` are logged; its exit code and output."""
    driver = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    try:
        deadline = time.time() + 120
        while logged(out_dir) < steps and time.time() < deadline:
            assert driver.poll() is None, f"ended before step {steps}: {driver.stderr.read().decode()[-500:]}"
            time.sleep(0.002)
    finally:
        os.killpg(driver.pid, sig)
        out, _ = driver.communicate(timeout=60)
    return driver.returncode, out.decode()


def lost_and_doubled(run_dir: Path, reference: Path) -> tuple[int, int]:
    steps = Counter((r.episode, r.step) for r in read_steps(run_dir))
    expected = {(r.episode, r.step) for r in read_steps(reference)}
    return len(expected - set(steps)), sum(n - 1 for n in steps.values())


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_a_driver_killed_at_a_seeded_point_resumes_to_the_same_transcripts(reference, tmp_path, kill_at):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(dump_config(in_process(tmp_path / "runs")))
    kill_when([ACADEME, "run", str(cfg_file), "--quiet"], tmp_path / "runs", kill_at)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "summary.json").exists()  # it really was cut short
    assert resume_run(run_dir)["episodes"] == EPISODES
    assert lost_and_doubled(run_dir, reference) == (0, 0)
    assert transcripts(run_dir) == transcripts(reference)


def test_a_driver_killed_twice_in_a_row_resumes_to_the_same_transcripts(reference, tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(dump_config(in_process(tmp_path / "runs")))
    kill_when([ACADEME, "run", str(cfg_file), "--quiet"], tmp_path / "runs", KILL_POINTS[1])
    (run_dir,) = (tmp_path / "runs").iterdir()
    kill_when([ACADEME, "resume", str(run_dir), "--quiet"], tmp_path / "runs", KILL_POINTS[-1])
    assert not (run_dir / "summary.json").exists()
    assert resume_run(run_dir)["episodes"] == EPISODES
    assert lost_and_doubled(run_dir, reference) == (0, 0)
    assert transcripts(run_dir) == transcripts(reference)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs for the run folders (root and mount needed; skipped where the machine forbids it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount rights)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_stops_the_run_keeps_what_was_logged_and_resume_finishes_it(reference, small_disk):
    cfg_file = small_disk.parent / "run.yaml"
    cfg_file.write_text(dump_config(in_process(small_disk / "runs")))
    run = subprocess.run([ACADEME, "run", str(cfg_file), "--quiet"], capture_output=True, text=True, timeout=300)
    said = " ".join(run.stdout.split())
    assert run.returncode == 2 and "No space left on device" in said and "free disk space, then: academe resume" in said
    (run_dir,) = (small_disk / "runs").iterdir()
    assert not (run_dir / "summary.json").exists()
    kept = len(list(read_steps(run_dir)))
    assert kept > 0
    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)  # space freed
    assert resume_run(run_dir)["episodes"] == EPISODES
    assert lost_and_doubled(run_dir, reference) == (0, 0)
    assert transcripts(run_dir) == transcripts(reference)


def test_ctrl_c_stops_the_driver_saying_how_to_go_on_and_the_resume_loses_nothing(reference, tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(dump_config(in_process(tmp_path / "runs")))
    code, out = kill_when([ACADEME, "run", str(cfg_file), "--quiet"], tmp_path / "runs", KILL_POINTS[2], signal.SIGINT)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert code == 130 and "interrupted" in out and f"academe resume {run_dir}" in " ".join(out.split())
    assert not (run_dir / "summary.json").exists()
    assert resume_run(run_dir)["episodes"] == EPISODES
    assert lost_and_doubled(run_dir, reference) == (0, 0)
    assert transcripts(run_dir) == transcripts(reference)
