"""A run on a two-node Ray cluster on this machine: `ray start --head`, a second raylet joined to it."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from academe.simulation.simulate import start_run
from simulations import SCRIPTED_STUDENT, SCRIPTED_TEACHER, config

RAY = str(Path(sys.executable).with_name("ray"))
NODE_LIMITS = ["--num-cpus=1", "--memory=2000000000", "--object-store-memory=150000000", "--disable-usage-stats"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_cluster(temp_dir: str) -> None:
    """Stop only the processes of this cluster (every one of them names its temp dir), not all of Ray."""
    ours = [p for p in psutil.process_iter(["cmdline"]) if temp_dir in " ".join(p.info["cmdline"] or [])]
    for process in ours:
        process.terminate()
    _, alive = psutil.wait_procs(ours, timeout=5)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture
def two_nodes():
    temp_dir = tempfile.mkdtemp(prefix="acr", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}",
                        "--include-dashboard=false", *NODE_LIMITS], check=True, env=env, capture_output=True)
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", *NODE_LIMITS], check=True, env=env,
                       capture_output=True)
        yield f"127.0.0.1:{port}"
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_simulation_runs_on_a_two_node_cluster(two_nodes, tmp_path):
    import ray

    assert not ray.is_initialized()
    one_cpu = {"num_cpus": 1}
    cfg = config(tmp_path, student=dict(SCRIPTED_STUDENT, **one_cpu), teacher=dict(SCRIPTED_TEACHER, **one_cpu),
                 episodes=20, concurrency=10)
    cfg = cfg.replace(ray=cfg.ray.replace(address=two_nodes))
    run_dir, summary = start_run(cfg)
    assert summary["episodes"] == 20 and summary["errors"] == 0
    nodes = {info["node"] for info in summary["models"].values()}
    assert len(nodes) == 2  # one CPU per node and one CPU per model actor: the actors are on different nodes
    assert not ray.is_initialized()  # the run left the cluster, and the cluster is left to its owner
