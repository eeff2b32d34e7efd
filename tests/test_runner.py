"""The runner on local Ray: batching, the durable log, determinism, failures (scripted and tiny models)."""

import collections


from academe.simulation.log import read_messages, read_steps
from academe.simulation.simulate import start_run
from simulations import SCRIPTED_STUDENT, config, tiny_student, transcripts


def test_scripted_run_completes_and_logs_every_turn(ray_local, tmp_path):
    run_dir, summary = start_run(config(tmp_path, episodes=30, concurrency=10))
    assert summary["episodes"] == 30 and summary["errors"] == 0
    assert 0 < summary["solved"] < 30
    table = read_messages(run_dir)
    frame = table.to_pandas()
    assert len(frame) == summary["messages_this_session"]
    assert set(frame["role"]) == {"student", "teacher"}
    assert frame.groupby("episode")["step"].apply(lambda s: s.is_unique).all()
    assert {"model", "model_version", "seed", "temperature", "prompt_tokens", "notes"} <= set(frame.columns)
    # every episode's first student turn is step 1, and the log is all Parquet once the run ended
    assert (frame[frame.phase == "attempt"]["step"] == 1).all()
    assert not list((run_dir / "log").glob("live-*.jsonl"))
    import datasets
    assert datasets.Dataset(table).num_rows == len(frame)


def test_each_model_gets_whole_batches(ray_local, tmp_path, tiny_model):
    run_dir, summary = start_run(config(tmp_path, student=tiny_student(tiny_model), episodes=16, concurrency=8))
    frame = read_messages(run_dir).to_pandas()
    student = frame[frame.role == "student"]
    batch_sizes = student.groupby("started").size()
    # the first 8 attempts went to the model as one batch; batches, not single prompts, reach it
    assert batch_sizes.max() == 8
    assert batch_sizes.mean() > 2
    assert (student.model == "tiny-llama").all()


def test_greedy_runs_are_reproducible(ray_local, tmp_path, tiny_model):
    first, _ = start_run(config(tmp_path / "a", student=tiny_student(tiny_model), episodes=8, concurrency=4))
    second, _ = start_run(config(tmp_path / "b", student=tiny_student(tiny_model), episodes=8, concurrency=8))
    assert transcripts(first) == transcripts(second)


def test_a_failing_agent_ends_its_episodes_cleanly_and_the_run_goes_on(ray_local, tmp_path):
    teacher = {"kind": "scripted", "path": "agents_for_tests:teacher_that_fails_sometimes", "num_cpus": 0}
    run_dir, summary = start_run(config(tmp_path, teacher=teacher, episodes=10))
    assert summary["episodes"] == 10
    failed = {r.episode: r.outcome for r in read_steps(run_dir) if r.outcome and r.outcome.error}
    assert set(failed) <= {3, 7} and failed  # only the tasks the teacher cannot handle
    assert all("cannot handle that task" in o.error for o in failed.values())
    frame = read_messages(run_dir).to_pandas()
    assert (frame[frame.finish_reason == "error"].role == "teacher").all()


def test_a_dead_actor_gets_its_batch_again_and_no_turn_is_duplicated(ray_local, tmp_path):
    import os
    from pathlib import Path
    Path(os.environ["ACADEME_TEST_MARKER"]).touch()
    student = dict(SCRIPTED_STUDENT, path="agents_for_tests:dies_once_student")
    run_dir, summary = start_run(config(tmp_path, student=student, episodes=12, concurrency=12))
    assert not Path(os.environ["ACADEME_TEST_MARKER"]).exists()  # it did die
    assert summary["episodes"] == 12 and summary["errors"] == 0
    steps = collections.Counter((r.episode, r.step) for r in read_steps(run_dir))
    assert max(steps.values()) == 1
    frame = read_messages(run_dir).to_pandas()
    assert len(frame) == summary["messages_this_session"]


def test_paced_collection_frees_cycles_once_the_heap_has_grown_and_restores_the_collector():
    import gc
    import weakref

    from academe.simulation.gc_pacing import paced_gc

    class Node:
        pass

    assert gc.isenabled()
    with paced_gc() as pacer:
        assert not gc.isenabled()
        first = Node()
        first.self = first  # a cycle: only the collector frees it
        alive = weakref.ref(first)
        del first
        pacer.tick()  # few objects made since the last collection: nothing is scanned yet
        assert alive() is not None
        keep = [[] for _ in range(pacer.allowance + 10_000)]  # the heap grows past what survived
        pacer.tick()
        assert alive() is None
        del keep
    assert gc.isenabled()
