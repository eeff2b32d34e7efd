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


FAKE_KEY = "sk-fake-7f3a9c0e5b2d4c8e"


def leaky_config(tmp_path, **student):
    import yaml

    config = {"run": {"name": "keys", "episodes": 3, "concurrency": 3, "out_dir": str(tmp_path / "runs")},
              "models": {"oracle": {"kind": "scripted", "path": "academe.protocols.oracles:socratic_teacher",
                                    "num_cpus": 0},
                         "remote": {"kind": "scripted", "path": "agents_for_tests:leaks_its_key", "num_cpus": 0}},
              "agents": {"teacher": {"role": "teacher", "model": "oracle"},
                         "student": {"role": "student", "model": "remote", **student}},
              "ray": {"num_cpus": 1}}
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_with_key(*args, cwd):
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = str(Path(__file__).resolve().parent)
    env = {**os.environ, "ACADEME_FAKE_API_KEY": FAKE_KEY, "RAY_AUTH_MODE": "disabled", "COLUMNS": "200",
           "PYTHONPATH": tests + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([str(Path(sys.executable).with_name("academe")), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=env)


def test_an_api_key_in_the_environment_reaches_no_file_and_no_message(tmp_path):
    """An agent's error quotes its key (as HTTP clients do): the log, the run folder's files and the
    terminal get the variable's name instead."""
    from academe.simulation.log import read_messages, read_steps

    ran = run_with_key("run", str(leaky_config(tmp_path)), "--quiet", cwd=tmp_path)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert ran.returncode == 1  # every episode failed: the agent could not be reached
    assert FAKE_KEY not in ran.stdout + ran.stderr
    assert "<$ACADEME_FAKE_API_KEY>" in ran.stdout  # the first error, as the summary shows it
    errors = [t.reply.error for r in read_steps(run_dir) for t in r.turns if t.reply.error]
    assert errors and all("Bearer <$ACADEME_FAKE_API_KEY>" in e for e in errors)
    assert FAKE_KEY not in read_messages(run_dir).to_pandas().to_json()
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path
    replayed = run_with_key("replay", str(run_dir), "--errors", cwd=tmp_path)
    assert "<$ACADEME_FAKE_API_KEY>" in replayed.stdout and FAKE_KEY not in replayed.stdout


def test_a_config_holding_a_key_is_refused_naming_the_variable_not_the_key(tmp_path):
    ran = run_with_key("run", str(leaky_config(tmp_path, persona=f"You may use the key {FAKE_KEY}.")), cwd=tmp_path)
    assert ran.returncode == 2
    assert "agents.student.persona holds the value of $ACADEME_FAKE_API_KEY" in ran.stdout
    assert FAKE_KEY not in ran.stdout + ran.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
