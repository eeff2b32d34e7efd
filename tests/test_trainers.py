"""Trainers on tiny random models: SFT and DPO phases, publication with acknowledgements, checkpoints."""

import asyncio

import pytest
import torch

from academe.agents import ModelSpec, Prompt, Sampling
from academe.protocols import user
from academe.simulation.actors import ModelPool, ModelServer
from academe.trainers.data import PreferencePair, SFTExample
from academe.trainers.publish import publish
from academe.trainers.trainer import CheckpointError, Trainer, TrainSettings

QUESTIONS = ["Ann has 3 apples and gets 4 more. How many?", "Ben has 9 cards and gives away 2. How many?",
             "Cat has 5 coins and gets 5 more. How many?", "Dan has 8 pens and gives away 3. How many?"]
SFT_DATA = [SFTExample(messages=(user(q),), target=f"Answer: {a}", episode=i, step=1, model_version=0)
            for i, (q, a) in enumerate(zip(QUESTIONS, ["7", "7", "10", "5"]))]
PAIRS = [PreferencePair(messages=(user(q),), chosen=f"Answer: {a}", rejected="I do not know.", task=str(i))
         for i, (q, a) in enumerate(zip(QUESTIONS, ["7", "7", "10", "5"]))]


def settings(mode="lora", **kw):
    return TrainSettings(**{"mode": mode, "lr": 5e-3 if mode == "lora" else 1e-3, "batch_size": 4, "steps": 6, **kw})


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_sft_phase_changes_every_trained_parameter_and_lowers_the_loss(tiny_model, mode):
    trainer = Trainer(ModelSpec(path=str(tiny_model)), settings(mode))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    loss_before = trainer.loss_on(SFT_DATA)
    report = trainer.train_sft(SFT_DATA)
    assert report.version == 1 and trainer.version == 1 and report.steps == 6 and report.tokens > 0
    unchanged = [n for n, p in trainer.model.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
    assert not unchanged
    if mode == "lora":
        assert all("lora_" in n for n in before)
    assert trainer.loss_on(SFT_DATA) < loss_before


def test_a_token_budget_ends_the_phase_at_the_step_that_reaches_it(tiny_model):
    per_step = Trainer(ModelSpec(path=str(tiny_model)), settings()).train_sft(SFT_DATA).tokens / 6  # 4 examples a batch
    budget = int(2.5 * per_step)  # reached during the third step
    report = Trainer(ModelSpec(path=str(tiny_model)), settings(tokens=budget)).train_sft(SFT_DATA)
    assert report.steps == 3 and len(report.losses) == 3 and budget <= report.tokens < budget + per_step
    capped = Trainer(ModelSpec(path=str(tiny_model)), settings(tokens=10**6)).train_sft(SFT_DATA)
    assert capped.steps == 6  # steps stays the cap


def test_dpo_phase_raises_the_chosen_vs_rejected_margin(tiny_model):
    trainer = Trainer(ModelSpec(path=str(tiny_model)), settings("lora"))
    margin_before = trainer.margin_on(PAIRS)
    report = trainer.train_dpo(PAIRS)
    assert report.kind == "dpo" and len(report.margins) == 6
    assert trainer.margin_on(PAIRS) > margin_before


def test_dpo_with_an_nll_term_keeps_the_chosen_replies_likelier_than_dpo_alone(tiny_model):
    chosen = [SFTExample(messages=p.messages, target=p.chosen, episode=i, step=1, model_version=0)
              for i, p in enumerate(PAIRS)]
    plain = Trainer(ModelSpec(path=str(tiny_model)), settings("lora"))
    plain.train_dpo(PAIRS)
    rpo = Trainer(ModelSpec(path=str(tiny_model)), settings("lora", dpo_nll=1.0))
    margin_before = rpo.margin_on(PAIRS)
    rpo.train_dpo(PAIRS)
    assert rpo.loss_on(chosen) < plain.loss_on(chosen) and rpo.margin_on(PAIRS) > margin_before


def test_empty_phase_is_refused_with_a_reason(tiny_model):
    trainer = Trainer(ModelSpec(path=str(tiny_model)), settings("lora"))
    with pytest.raises(ValueError, match="needs at least one example"):
        trainer.train_sft([])
    assert trainer.version == 0


def test_scripted_models_cannot_be_trained():
    with pytest.raises(ValueError, match="which a trainer cannot train"):
        Trainer(ModelSpec(kind="scripted", path="academe.protocols.oracles:socratic_teacher"), settings())


def test_checkpoint_round_trip_gives_identical_outputs(tiny_model, tmp_path):
    trainer = Trainer(ModelSpec(path=str(tiny_model)), settings("lora"))
    trainer.train_sft(SFT_DATA)
    folder = trainer.save(tmp_path)
    assert folder.name == "v00001" and (folder / "weights.safetensors").is_file()
    fresh = Trainer(ModelSpec(path=str(tiny_model)), settings("lora"))
    assert fresh.load(folder) == 1
    batch = {k: v for k, v in fresh.tokenizer(["hello there"], return_tensors="pt").items()}
    with torch.no_grad():
        assert torch.equal(trainer.model(**batch).logits, fresh.model(**batch).logits)
    assert trainer.weights("adapter").keys() == fresh.weights("adapter").keys()


def test_corrupt_or_foreign_checkpoints_are_refused(tiny_model, tmp_path):
    trainer = Trainer(ModelSpec(path=str(tiny_model)), settings("lora"))
    folder = trainer.save(tmp_path / "lora")
    full = Trainer(ModelSpec(path=str(tiny_model)), settings("full"))
    with pytest.raises(CheckpointError, match="from another model or setup: mode is 'lora' there, 'full' here"):
        full.load(folder)
    (folder / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="weights.safetensors is unreadable"):
        trainer.load(folder)
    with pytest.raises(CheckpointError, match="no readable trainer_state.json"):
        trainer.load(tmp_path / "nowhere")


def prompts():
    return [Prompt(messages=(user(q),), sampling=Sampling(max_new_tokens=6)) for q in QUESTIONS]


@pytest.mark.parametrize("what", ["full", "adapter"])
def test_publication_reaches_every_receiver_and_replies_carry_the_new_version(ray_local, tiny_model, what):
    trainer = Trainer(ModelSpec(path=str(tiny_model)), settings("lora", steps=10))
    pool = ModelPool({"a": ModelSpec(path=str(tiny_model)), "b": ModelSpec(path=str(tiny_model))})
    try:
        before = asyncio.run(pool.generate("a", prompts()))
        trainer.train_sft(SFT_DATA)
        report = publish(pool.servers, trainer.weights(what), trainer.version, what=what, lora=trainer.lora_settings(),
                         timeout_s=30)
        assert report.ok and sorted(report.acknowledged) == ["a", "b"]
        assert all(info["version"] == 1 for info in pool.describe().values())
        after = {m: asyncio.run(pool.generate(m, prompts())) for m in ("a", "b")}
        assert all(r.model_version == 1 for replies in after.values() for r in replies)
        assert [r.text for r in after["a"]] == [r.text for r in after["b"]]
        assert [r.text for r in after["a"]] != [r.text for r in before]  # the new weights are in use
    finally:
        pool.shutdown()


def test_adapter_and_full_publication_give_the_same_replies(ray_local, tiny_model):
    trainer = Trainer(ModelSpec(path=str(tiny_model)), settings("lora", steps=10))
    trainer.train_sft(SFT_DATA)
    via_adapter = ModelServer(ModelSpec(path=str(tiny_model)))
    via_full = ModelServer(ModelSpec(path=str(tiny_model)))
    via_adapter.load_adapter(trainer.weights("adapter"), trainer.lora_settings(), 1)
    via_full.load_state_dict(trainer.weights("full"), 1)
    assert [r.text for r in via_adapter.generate(prompts())] == [r.text for r in via_full.generate(prompts())]


def test_a_dead_or_busy_receiver_is_reported_not_waited_for(ray_local, tiny_model):
    import os
    import time

    import ray
    os.environ["ACADEME_TEST_SLEEP"] = "6"
    pool = ModelPool({"alive": ModelSpec(path=str(tiny_model)), "dead": ModelSpec(path=str(tiny_model)),
                      "busy": ModelSpec(kind="scripted", path="agents_for_tests:sleepy", num_cpus=0)})
    try:
        ray.kill(pool.servers["dead"], no_restart=True)
        busy_call = pool.servers["busy"].generate.remote(prompts()[:1])  # keeps it busy for seconds
        weights = ModelServer(ModelSpec(path=str(tiny_model))).backend.state_dict()
        start = time.perf_counter()
        report = publish(pool.servers, weights, 7, timeout_s=2.0)
        assert time.perf_counter() - start < 5.0
        assert report.acknowledged == ("alive",)
        assert "ActorDiedError" in report.failed["dead"] or "died" in report.failed["dead"].lower()
        assert report.failed["busy"] == "no acknowledgement within 2 s"
        assert ray.get(pool.servers["alive"].version.remote()) == 7
        ray.get(busy_call)
    finally:
        pool.servers.pop("dead")
        pool.shutdown()


def test_in_process_publication_acknowledges_and_names_what_cannot_receive(tiny_model):
    from academe.trainers.publish import publish_local

    receiver = ModelServer(ModelSpec(path=str(tiny_model)))
    scripted = ModelServer(ModelSpec(kind="scripted", path="academe.protocols.oracles:socratic_teacher"))
    report = publish_local({"tiny": receiver, "oracle": scripted}, receiver.backend.state_dict(), 3)
    assert report.acknowledged == ("tiny",) and receiver.version() == 3
    assert report.failed == {"oracle": "TypeError: model 'scripted:socratic_teacher' cannot receive weights"}


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_a_phase_from_the_base_model_forgets_the_last_version(tiny_model, mode):
    trainer = Trainer(ModelSpec(path=str(tiny_model)), settings(mode))
    start = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train_sft(SFT_DATA)
    trainer.reset()
    assert all(torch.equal(p, start[n]) for n, p in trainer.model.named_parameters() if p.requires_grad)
    assert not trainer.optimizer.state  # a fresh optimizer too
    again = Trainer(ModelSpec(path=str(tiny_model)), settings(mode))
    again.train_sft(SFT_DATA)
    report = trainer.train_sft(SFT_DATA, from_base=True)
    assert report.version == 2  # versions count on
    # from the base, its first loss is the base model's, not the trained one's
    assert report.losses[0] == pytest.approx(again.train_sft(SFT_DATA, from_base=True).losses[0], rel=1e-4)


@pytest.mark.parametrize("damage", ["weights.safetensors", "optimizer.pt", "trainer_state.json"])
def test_a_corrupt_checkpoint_is_set_aside_and_the_one_before_it_is_used(tiny_model, tmp_path, damage):
    from academe.simulation.config import TrainingSection
    from academe.trainers.handle import ModelTrainer

    section = TrainingSection(settings=settings("lora"), num_cpus=1)
    first = ModelTrainer("tiny", ModelSpec(path=str(tiny_model)), section, tmp_path, use_ray=False)
    for _ in range(2):
        asyncio.run(first.train("sft", SFT_DATA))
        asyncio.run(first.save())
    good = {k: v.clone() for k, v in first.trainer.weights("adapter").items()}
    asyncio.run(first.train("sft", SFT_DATA))
    newest = asyncio.run(first.save())
    (newest / damage).write_bytes((newest / damage).read_bytes()[:40])  # cut short, as by a full disk
    again = ModelTrainer("tiny", ModelSpec(path=str(tiny_model)), section, tmp_path, use_ray=False)
    assert asyncio.run(again.restore()).name == "v00002" and again.version == 2
    (note,) = again.set_aside
    assert "v00003" in note and damage in note
    assert (tmp_path / "checkpoints" / "tiny" / "v00003.corrupt").is_dir()
    restored = again.trainer.weights("adapter")
    assert restored.keys() == good.keys() and all(torch.equal(restored[k], good[k]) for k in good)
