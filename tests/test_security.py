"""No code in the package runs text it reads: no eval/exec, no unpickling, no unsafe YAML or torch loads."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "protocols", "simulation", "trainers")
SOURCES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def calls(tree: ast.AST):
    """(dotted name, keyword names) of every call in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            yield name, {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_evaluates_or_unpickles_what_it_reads(path):
    found = []
    for name, keywords in calls(ast.parse(path.read_text(), str(path))):
        if name in ("eval", "exec", "compile", "__import__") or name.startswith(("pickle.", "marshal.", "dill.")):
            found.append(name)
        if name == "yaml.load" or name == "yaml.unsafe_load":
            found.append(name)
        if name == "torch.load" and keywords.get("weights_only") != "True":
            found.append("torch.load without weights_only=True")
    assert not found, f"{path.relative_to(ROOT)}: {found}"


def test_the_scan_sees_the_whole_package():
    assert len(SOURCES) > 40 and ROOT / "simulation" / "runner.py" in SOURCES


LISTENING = """
import json, sys, psutil
from academe.simulation.config import parse_config
from academe.simulation.simulate import ray_session

config = parse_config({"models": {"m": {"kind": "scripted", "path": "academe.protocols.oracles:guessing_student"}},
                       "agents": {"student": {"role": "student", "model": "m"}, "teacher": {"role": "teacher", "model": "m"}},
                       "ray": {"num_cpus": 1}})
with ray_session(config):
    import ray

    @ray.remote(num_cpus=0)
    class Worker:
        def ping(self):
            return "pong"

    assert ray.get(Worker.remote().ping.remote()) == "pong"  # a worker process with its own server
    me = psutil.Process()
    found = []
    for process in [me, *me.children(recursive=True)]:
        try:
            found += [(process.name(), c.laddr.ip) for c in process.net_connections("inet") if c.status == "LISTEN"]
        except psutil.Error:
            pass
    print(json.dumps(found))
"""


def test_a_locally_started_ray_listens_on_loopback_only(tmp_path):
    """The embedded default: Ray's GCS, raylet and worker servers bind 127.0.0.1, with Ray's token auth
    left as it is (on by default)."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", LISTENING], capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    listening = json.loads(done.stdout.strip().splitlines()[-1])
    names = {name for name, _ in listening}
    assert {"gcs_server", "raylet"} <= names, listening
    assert len(listening) >= 4
    outside = [(name, ip) for name, ip in listening if ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert not outside, f"listening beyond loopback: {outside}"
