"""Training data from logged runs, through the protocol's declarations (scripted agents, local Ray)."""

import json

import pytest

from academe.protocols import Preference, socratic
from academe.protocols.engine import Distill
from academe.simulation.log import read_steps
from academe.simulation.simulate import start_run
from academe.trainers.data import LogFilter, build, chat_row, preference_pairs, sft_examples, to_chat_jsonl, to_hf_dataset
from simulations import config
from tests_paths import GSM8K


@pytest.fixture(scope="module")
def logged(ray_local, tmp_path_factory):
    """A run on four GSM8K problems, each tried by several episodes: some solve it, some do not."""
    cfg = config(tmp_path_factory.mktemp("runs"), episodes=24, concurrency=24)
    # four problems, cycled: each is tried by six episodes
    tasks = cfg.tasks.replace(source="file", path=str(GSM8K), limit=4)
    run_dir, summary = start_run(cfg.replace(tasks=tasks))
    logged_run_dirs.append(run_dir)
    return list(read_steps(run_dir)), summary


logged_run_dirs: list = []  # the folder of the ``logged`` run


def test_socratic_declaration_gives_the_solving_reply_for_the_unaided_question(logged):
    records, summary = logged
    spec = socratic.training_for("student")
    examples = sft_examples(records, spec)
    assert len(examples) == summary["solved"] > 0
    for ex in examples:
        assert "Solve this problem" in ex.messages[-1].content  # the first, unaided prompt
        assert ex.messages[-1].content.count("\n") >= 1 and len(ex.messages) == 1
    by_episode = {r.episode: r for r in records if r.outcome}
    assert all(by_episode[ex.episode].outcome.solved for ex in examples)


def test_preference_pairs_put_solved_against_unsolved_replies_to_the_same_prompt(logged):
    records, _ = logged
    pairs = preference_pairs(records, Preference(role="student", phases=("attempt",)))
    assert pairs
    for pair in pairs:
        assert pair.chosen != pair.rejected and pair.task
    row = chat_row(pairs[0])
    assert set(row) == {"prompt", "chosen", "rejected"} and row["chosen"][0]["role"] == "assistant"


def test_distillation_targets_are_the_teacher_replies(logged):
    records, _ = logged
    examples = build(records, Distill(student="student", teacher="teacher", phases=("guide",)))
    assert examples and all(ex.target.startswith("(") for ex in examples)  # moves like "(focus) ..."


def test_version_filters_and_exports(logged, tmp_path):
    records, _ = logged
    spec = socratic.training_for("student")
    assert sft_examples(records, spec, LogFilter(min_version=1)) == []  # nothing newer than v0 was logged
    examples = sft_examples(records, spec, LogFilter(max_version=0))
    path = to_chat_jsonl(examples, tmp_path / "sft.jsonl")
    rows = [json.loads(line) for line in open(path)]
    assert len(rows) == len(examples) and rows[0]["messages"][-1] == {"role": "assistant", "content": examples[0].target}
    dataset = to_hf_dataset(examples)
    assert dataset.num_rows == len(examples) and dataset.column_names == ["messages"]


@pytest.mark.parametrize("declaration", [
    socratic.training_for("student"),
    Preference(role="student", phases=("attempt", "answer")),
    Distill(student="student", teacher="teacher", phases=("guide",)),
], ids=["sft", "preference", "distill"])
def test_a_training_phase_builds_the_same_data_from_what_it_keeps_of_the_log(logged, declaration):
    """A scheduled phase keeps only the new steps' turns of the role its data comes from (no state,
    no asks): the data built from them is the data built from the whole log."""
    from types import SimpleNamespace

    from academe.trainers.schedule import ScheduledTraining

    records, _ = logged
    hook = SimpleNamespace(tail=None, run_dir=logged_run_dirs[0], declaration=declaration)
    kept = ScheduledTraining._new_turns(hook)
    assert ScheduledTraining._new_turns(hook) == []  # read once
    assert all(r.state is None and not r.asks for r in kept)
    assert build(kept, declaration) == build(records, declaration) != []
