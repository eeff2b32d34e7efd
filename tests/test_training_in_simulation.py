"""Training inside a running simulation (tiny models): phases, versions in the log, checkpoints, resume."""


import pytest

from academe.agents import Reply
from academe.protocols import PROTOCOLS, SFT, Done, EpisodeState, Phase, Protocol, ask, user
from academe.protocols.grading import is_correct
from academe.simulation.config import ConfigError, parse_config
from academe.simulation.log import read_messages
from academe.simulation.simulate import resume_run, start_run


class Drill(EpisodeState):
    pass


def answered(s: Drill, replies: tuple[Reply, ...]):
    (reply,) = replies
    solved = is_correct(reply.text, s.task.answer)
    return Done(state=s, outcome={"solved": solved, "score": float(solved)})


# A one-turn drill whose every answer is training data: with a tiny random model nothing is ever
# solved, so Socratic's "solved only" declaration would give a tiny student no data.
drill = Protocol(name="drill", roles=("student",), state=Drill, first=("answer",),
                 start=lambda task, options: ask("answer", Drill(task=task), user(task.question)),
                 phases={"answer": Phase("student", answered, then=("<end>",))},
                 train=(SFT(role="student", phases=("answer",), when="always"),))


@pytest.fixture
def with_drill(monkeypatch):
    monkeypatch.setitem(PROTOCOLS, "drill", drill)


def config(tmp_path, tiny_model, also=None, **training):
    return parse_config({
        "run": {"name": "learn", "episodes": 12, "concurrency": 4, "out_dir": str(tmp_path)},
        "protocol": {"name": "drill"},
        "tasks": {"source": "generated", "steps": 1},
        "models": {"tiny": {"kind": "transformers", "path": str(tiny_model), "num_cpus": 1}},
        "agents": {"student": {"role": "student", "model": "tiny", "sampling": {"max_new_tokens": 8}}},
        "training": {"tiny": {"role": "student", "every_episodes": 4, "publish": "adapter",
                              "settings": {"steps": 3, "batch_size": 4, "lr": 0.01}, **training}},
        "evaluation": {"role": "student", "count": 8, "also": also or {}},
    })


def test_sync_training_produces_versions_the_log_shows(ray_local, tmp_path, tiny_model, with_drill):
    harder = {"count": 3, "tasks": {"source": "generated", "steps": 3, "seed": 5}}
    run_dir, summary = start_run(config(tmp_path, tiny_model, also={"three-step": harder}))
    (training,) = summary["training"]
    assert training["versions"] == [1, 2, 3]
    # the further held-out set is measured wherever the main one is: the baseline and every phase
    assert [sorted(p["also"]) for p in training["phases"]] == [["three-step"]] * 4
    trained = [p for p in training["phases"] if p["event"] == "trained"]
    assert all(p["published_to"] == ["tiny"] and not p["publish_failed"] for p in trained)
    assert [v for v, _ in training["accuracy"]] == [0, 1, 2, 3]  # baseline, then after every phase
    frame = read_messages(run_dir).to_pandas().sort_values("started")
    # with the simulation paused while it trains, episodes 4.. are answered by version 1 and later
    versions = frame.groupby("episode").model_version.first()
    assert list(versions) == [0] * 4 + [1] * 4 + [2] * 4
    assert (run_dir / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (run_dir / "checkpoints" / "tiny").iterdir()) == ["v00001", "v00002", "v00003"]
    assert summary["training_s"] > 0 and summary["simulating_s"] > 0
    assert not any(turns_during(frame, p) for p in trained)  # paused: no turn began while it trained


def turns_during(frame, phase) -> int:
    return int(((frame.started > phase["started"]) & (frame.started < phase["ended"])).sum())


def test_background_training_lets_the_simulation_go_on(ray_local, tmp_path, tiny_model, with_drill):
    cfg = config(tmp_path, tiny_model, wait=False, max_staleness=1)
    slow_student = cfg.agents["student"].replace(sampling={"max_new_tokens": 48})
    cfg = cfg.replace(run=cfg.run.replace(episodes=160, concurrency=1), agents={"student": slow_student})
    run_dir, summary = start_run(cfg)
    (training,) = summary["training"]
    assert training["versions"] and summary["episodes"] == 160
    frame = read_messages(run_dir).to_pandas()
    trained = [p for p in training["phases"] if p["event"] == "trained"]
    assert sum(turns_during(frame, p) for p in trained) > 0  # episodes went on while it trained
    assert frame.model_version.min() == 0 and frame.model_version.max() >= 1


def test_resume_restores_the_last_checkpoint(ray_local, tmp_path, tiny_model, with_drill):
    run_dir, summary = start_run(config(tmp_path, tiny_model))
    phases = (run_dir / "training.jsonl").read_text().splitlines()
    summary = resume_run(run_dir)  # nothing left to run: the checkpoint is loaded and published
    assert summary["training"][0]["versions"] == [1, 2, 3]
    assert (run_dir / "training.jsonl").read_text().splitlines() == phases


def test_untrainable_model_and_undeclared_role_are_refused_at_config_time(tmp_path, tiny_model, with_drill):
    raw = config(tmp_path, tiny_model).model_dump(mode="json")
    raw["models"]["tiny"] = {"kind": "scripted", "path": "academe.protocols.oracles:guessing_student"}
    with pytest.raises(ConfigError, match="training.tiny: model 'tiny' is 'scripted' and cannot be trained"):
        parse_config(raw)
    from academe.simulation.simulate import plan
    raw = config(tmp_path, tiny_model).model_dump(mode="json")
    raw["training"]["tiny"]["kind"] = "preference"
    with pytest.raises(ConfigError, match="declares no training data for role 'student' of kind 'preference'"):
        plan(parse_config(raw))


def test_a_phase_with_no_data_is_skipped_with_a_reason_and_the_run_goes_on(ray_local, tmp_path, tiny_model):
    # Socratic trains only on solved episodes; a tiny random student solves none.
    cfg = config(tmp_path, tiny_model).model_dump(mode="json")
    cfg["protocol"] = {"name": "socratic", "options": {"max_student_turns": 2}}
    cfg["models"]["oracle"] = {"kind": "scripted", "path": "academe.protocols.oracles:socratic_teacher", "num_cpus": 0}
    cfg["agents"]["teacher"] = {"role": "teacher", "model": "oracle"}
    cfg["evaluation"] = None
    run_dir, summary = start_run(parse_config(cfg))
    assert summary["episodes"] == 12 and summary["errors"] == 0
    (training,) = summary["training"]
    assert training["versions"] == []
    skipped = [p for p in training["phases"] if p["event"] == "skipped"]
    assert len(skipped) == 3 and "0 example(s) from the log (need 1); kept version 0" in skipped[0]["reason"]


def test_a_trainer_that_dies_mid_phase_keeps_the_last_good_version(ray_local, tmp_path, tiny_model, with_drill):
    """Ray's memory monitor kills a trainer process that uses too much memory; here the test does
    the same (SIGKILL) while the trainer runs its second phase."""
    import signal
    import threading
    import time

    import psutil

    killed = []

    def kill_during_second_phase():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            phases = [p.read_text() for p in tmp_path.glob("*/training.jsonl")]
            if phases and phases[0].count('"trained"') == 1:
                for process in psutil.process_iter(["cmdline"]):
                    if "ray::Trainer.train_sft" in " ".join(process.info["cmdline"] or []):
                        process.send_signal(signal.SIGKILL)
                        killed.append(process.pid)
            time.sleep(0.02)

    cfg = config(tmp_path, tiny_model)
    slow = cfg.training["tiny"].replace(settings=cfg.training["tiny"].settings.replace(steps=60))
    watcher = threading.Thread(target=kill_during_second_phase, daemon=True)
    watcher.start()
    run_dir, summary = start_run(cfg.replace(training={"tiny": slow}, evaluation=None))
    assert killed
    (training,) = summary["training"]
    events = [(p["event"], p["version"]) for p in training["phases"]]
    assert events == [("trained", 1), ("failed", 1), ("trained", 2)]
    assert "the trainer died" in training["phases"][1]["reason"] and "kept version 1" in training["phases"][1]["reason"]
    assert summary["episodes"] == 12 and summary["errors"] == 0


def test_a_fork_can_put_a_later_checkpoint_of_the_run_in_the_students_place(ray_local, tmp_path, tiny_model,
                                                                             with_drill):
    from academe.simulation.fork import ForkPoint, make_fork
    from simulations import transcripts

    run_dir, _ = start_run(config(tmp_path, tiny_model))
    parent = read_messages(run_dir).to_pandas()
    by_v2 = sorted(parent[parent.model_version == 2].episode.unique())
    assert len(by_v2) == 4
    fork_dir = make_fork(run_dir, [ForkPoint(e, 0) for e in by_v2], {"student": "tiny@v2"}, out_dir=str(tmp_path))
    resume_run(fork_dir)
    forked = read_messages(fork_dir).to_pandas()
    assert set(forked.model_version) == {2}
    # greedy, same seeds, the checkpoint's weights: each episode says what v2 said in the parent
    assert list(transcripts(fork_dir).values()) == [transcripts(run_dir)[e] for e in by_v2]
