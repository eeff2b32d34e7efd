"""Shared fixtures: local Ray, a tiny random model on disk, the data shipped beside the project."""

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Armed by tests that kill an actor on purpose (see agents_for_tests.dies_once_student).
os.environ.setdefault("ACADEME_TEST_MARKER", os.path.join(tempfile.mkdtemp(), "die-once"))

@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Llama; ACADEME_TINY_MODEL names one built earlier (machines without SmolLM2's tokenizer)."""
    from academe.agents.models import build_tiny_model

    if os.environ.get("ACADEME_TINY_MODEL"):
        return Path(os.environ["ACADEME_TINY_MODEL"])
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama", seed=0)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    tests = str(Path(__file__).resolve().parent)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": tests + os.pathsep + os.environ.get("PYTHONPATH", "")}})
    yield ray
    ray.shutdown()
