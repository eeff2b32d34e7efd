"""The CUDA paths: generation, DPO and weighted SFT, publication and a whole program on a GPU.

Skipped where torch sees no CUDA device; run on a GPU machine with ``pytest -m gpu``.
"""

import pytest
import torch

from academe.agents import ModelSpec, Prompt, Sampling
from academe.protocols import user
from academe.simulation.actors import ModelServer
from academe.simulation.simulate import start_run
from academe.trainers.publish import publish_local
from academe.trainers.trainer import Trainer, TrainSettings
from simulations import program_config
from test_trainers import PAIRS, SFT_DATA

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_training_generation_and_publication_run_on_the_gpu(tiny_model):
    spec = ModelSpec(path=str(tiny_model), device="cuda")
    trainer = Trainer(spec, TrainSettings(lr=5e-3, batch_size=4, steps=6))
    assert trainer.device.type == "cuda" and next(trainer.model.parameters()).is_cuda
    margin = trainer.margin_on(PAIRS)
    assert trainer.train_dpo(PAIRS).version == 1 and trainer.margin_on(PAIRS) > margin
    weighted = [e.replace(weight=w) for e, w in zip(SFT_DATA, (1.0, 0.5, 0.25, 0.0))]
    loss = trainer.loss_on(weighted)
    assert trainer.train_sft(weighted).version == 2 and trainer.loss_on(weighted) < loss
    server = ModelServer(spec)
    assert server.backend.device.type == "cuda"
    report = publish_local({"m": server}, trainer.weights("adapter"), trainer.version, "adapter", trainer.lora_settings())
    assert report.acknowledged == ("m",)
    prompts = [Prompt(messages=(user(q),), sampling=Sampling(max_new_tokens=6), seed=1) for q in ("a", "b")]
    assert [r.model_version for r in server.generate(prompts)] == [2, 2]


def test_a_program_trains_both_models_on_the_gpu(tmp_path, tiny_model):
    cfg = program_config(tmp_path, tiny_model, rounds=1)
    models = {name: spec.replace(device="cuda") if spec.kind == "transformers" else spec
              for name, spec in cfg.models.items()}
    run_dir, summary = start_run(cfg.replace(models=models, ray=cfg.ray.replace(enabled=False)))
    assert [(t["role"], t["version"], t["skipped"]) for t in summary["trained"]] == [("solver", 1, None),
                                                                                   ("generator", 1, None)]
