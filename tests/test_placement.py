"""Placement groups from the config (models and trainers reserved together, checked before a run),
and the runtime environment shipped to every actor."""

import pytest

from academe.simulation.config import ConfigError, parse_config
from academe.simulation.simulate import start_run
from simulations import config


def placed(tmp_path, tiny_model, group, model_at=None, trainer_at=None):
    raw = config(tmp_path, student={"kind": "transformers", "path": str(tiny_model), "num_cpus": 1, "threads": 1},
                 episodes=8, concurrency=4).model_dump(mode="json")
    raw["placement"] = {"pair": group}
    raw["models"]["student_model"]["placement"] = model_at
    raw["training"] = {"student_model": {"role": "student", "every_episodes": 4, "num_cpus": 1, "threads": 1,
                                         "placement": trainer_at,
                                         "settings": {"steps": 1, "batch_size": 2, "lr": 0.01}}}
    raw["protocol"] = {"name": "drill"}
    del raw["agents"]["teacher"]
    return raw


@pytest.fixture
def with_drill(monkeypatch):
    from academe.protocols import PROTOCOLS
    from test_training_in_simulation import drill

    monkeypatch.setitem(PROTOCOLS, "drill", drill)


def test_a_trainer_and_its_model_share_one_bundle(ray_local, tmp_path, tiny_model, with_drill):
    # the group reserves both CPUs of this Ray: the model and its trainer can only run inside it
    raw = placed(tmp_path, tiny_model, {"bundles": [{"CPU": 2}]}, {"group": "pair"}, {"group": "pair"})
    raw["models"]["teacher_model"]["num_cpus"] = 0
    run_dir, summary = start_run(parse_config(raw))
    assert summary["training"][0]["versions"] == [1, 2]
    assert summary["models"]["student_model"]["placement_group"] is not None
    assert summary["models"]["teacher_model"]["placement_group"] is None


def test_placement_mistakes_are_named_before_anything_starts(ray_local, tmp_path, tiny_model, with_drill):
    with pytest.raises(ConfigError, match=r"models\.student_model\.placement\.group: no placement group 'gpus'"):
        parse_config(placed(tmp_path, tiny_model, {"bundles": [{"CPU": 1}]}, {"group": "gpus"}))
    with pytest.raises(ConfigError, match=r"training\.student_model\.placement\.bundle: group 'pair' has 1 bundle"):
        parse_config(placed(tmp_path, tiny_model, {"bundles": [{"CPU": 1}]}, None, {"group": "pair", "bundle": 1}))
    with pytest.raises(ConfigError, match=r"placement\.pair\.bundles\.0: no node of the Ray cluster has \{'GPU': 1\.0\}"):
        start_run(parse_config(placed(tmp_path, tiny_model, {"bundles": [{"GPU": 1}]}, {"group": "pair"})))


def test_ray_runtime_env_reaches_every_actor(tmp_path):
    """``ray.runtime_env`` (here its env_vars) is the environment of the actors the run starts."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from academe.simulation.log import read_steps
    from simulations import SCRIPTED_STUDENT

    tests = str(Path(__file__).resolve().parent)
    env = {k: v for k, v in os.environ.items() if k != "ACADEME_RUNTIME_ENV_MARK"}
    env["PYTHONPATH"] = tests + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([str(Path(sys.executable).parent / "academe"), "run", "--quiet", "--set", "run.episodes=2", "--set", f"run.out_dir={tmp_path}",
                             "--set", f"models.smollm2={{kind: scripted, path: '{SCRIPTED_STUDENT['path']}'}}",
                             "--set", "models.oracle.path=agents_for_tests:runtime_env_marker",
                             "--set", "ray.runtime_env={env_vars: {ACADEME_RUNTIME_ENV_MARK: shipped}}"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 1: every episode failed (the oracle rambles)
    (run_dir,) = tmp_path.iterdir()
    teacher = {t.reply.text for r in read_steps(run_dir) for t in r.turns if t.role == "teacher"}
    assert teacher == {"marker=shipped"}
