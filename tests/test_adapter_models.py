"""Adapter models (kind adapter): LoRA students served by another model's vLLM engine. The engine
itself is tested in tests/test_vllm.py; here, what the config accepts and how the pool routes."""

import pytest

from academe.simulation.actors import ModelPool
from academe.simulation.config import ConfigError, parse_config
from simulations import config


def with_models(tmp_path, models, training=None):
    raw = config(tmp_path).model_dump(mode="json")
    raw["models"].update(models)
    raw["agents"]["student"]["model"] = "student_a"
    if training:
        raw["training"] = training
    return raw


BASE = {"kind": "vllm", "path": "smollm2", "options": {"max_loras": 1}}


def test_an_adapter_model_needs_a_host_with_room_for_it(tmp_path):
    parse_config(with_models(tmp_path, {"base": BASE, "student_a": {"kind": "adapter", "path": "base"}}))
    with pytest.raises(ConfigError, match=r"models\.student_a\.path: .*names the model whose engine serves it.*"
                                          r"'student_model' is not one"):
        parse_config(with_models(tmp_path, {"student_a": {"kind": "adapter", "path": "student_model"}}))
    with pytest.raises(ConfigError, match=r"models\.base\.options\.max_loras: 1, but 2 adapter models are served "
                                          r"by it \(student_a, student_b\)"):
        parse_config(with_models(tmp_path, {"base": BASE, "student_a": {"kind": "adapter", "path": "base"},
                                            "student_b": {"kind": "adapter", "path": "base"}}))
    with pytest.raises(ConfigError, match=r"training\.student_a: .*trains and publishes a LoRA adapter"):
        parse_config(with_models(tmp_path, {"base": BASE, "student_a": {"kind": "adapter", "path": "base"}},
                                 {"student_a": {"role": "student", "settings": {"mode": "full"}}}))


def test_a_trainer_of_an_adapter_model_loads_its_hosts_weights(tmp_path):
    cfg = parse_config(with_models(tmp_path, {"base": BASE, "student_a": {"kind": "adapter", "path": "base"}},
                                   {"student_a": {"role": "student"}}))
    assert cfg.trained_spec("student_a") == cfg.models["base"]
    assert cfg.trained_spec("student_model") == cfg.models["student_model"]


def test_the_pool_sends_an_adapter_models_batches_to_its_host_tagged_with_its_name(tmp_path):
    specs = dict(config(tmp_path).models)  # a scripted host: the pool's routing, not an engine
    specs["student_a"] = specs["student_model"].replace(kind="adapter", path="student_model")
    pool = ModelPool(specs, use_ray=False)
    assert set(pool.servers) == {"student_model", "teacher_model"}  # no server of its own
    assert pool.server("student_a") is pool.servers["student_model"]
    assert (pool.adapter("student_a"), pool.adapter("student_model")) == ("student_a", None)
    with pytest.raises(TypeError, match="hosts no adapter models \\(asked for 'student_a'\\)"):
        pool.servers["student_model"].generate([], adapter="student_a")
