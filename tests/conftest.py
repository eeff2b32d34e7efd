"""Shared fixtures: local Ray, a tiny random model on disk, the data shipped beside the project."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GSM8K = DATA / "gsm8k" / "test_socratic.dev.jsonl"
MATHDIAL = DATA / "mathdial" / "test.dev.jsonl"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from academe.agents.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama", seed=0)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
