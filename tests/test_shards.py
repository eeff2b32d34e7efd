"""Sharded runners: a run's episodes split across runner actors, each writing its own log segments."""

import pyarrow.parquet as pq
import pytest

from academe.simulation.config import ConfigError, parse_config
from academe.simulation.log import read_messages, read_steps
from academe.simulation.shards import blocks
from academe.simulation.simulate import start_run
from simulations import config, tiny_student, transcripts


def test_a_greedy_run_gives_the_same_transcripts_with_one_and_two_shards(ray_local, tmp_path, tiny_model):
    student = tiny_student(tiny_model, num_cpus=0.5)
    one, one_summary = start_run(config(tmp_path / "one", student=student, episodes=16, concurrency=8))
    two, two_summary = start_run(config(tmp_path / "two", student=student, episodes=16, concurrency=8, shards=2))
    assert transcripts(one) == transcripts(two)
    assert len(transcripts(two)) == 16
    for key in ("episodes", "solved", "errors", "at_k"):
        assert one_summary[key] == two_summary[key]
    assert two_summary["messages_this_session"] == one_summary["messages_this_session"] == read_messages(two).num_rows
    # each shard wrote its own segments (shard 1's are tagged s001); read together they are the whole run
    episodes_by_writer: dict[str, set] = {}
    for path in (two / "log").glob("steps-*.parquet"):
        writer = "s001" if path.name.startswith("steps-s001-") else "0"
        episodes_by_writer.setdefault(writer, set()).update(pq.read_table(path).column("episode").to_pylist())
    assert episodes_by_writer == {"0": set(range(8)), "s001": set(range(8, 16))}
    assert not list((two / "log").glob("live-*"))


def test_shards_split_episodes_into_contiguous_blocks():
    assert blocks(list(range(10)), 3) == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert blocks([4, 5], 4) == [[], [4], [], [5]]  # run_sharded starts no shard for an empty block


def test_shards_are_refused_where_they_cannot_run(tmp_path):
    raw = config(tmp_path, shards=2).model_dump(mode="json")
    raw["ray"]["enabled"] = False
    with pytest.raises(ConfigError, match=r"run\.shards: 2 runner shards need Ray .* but ray\.enabled is false"):
        parse_config(raw)


def test_a_shards_unfinished_segment_is_recovered_by_the_next_session_whatever_its_shards(ray_local, tmp_path):
    run_dir, _ = start_run(config(tmp_path, episodes=12, concurrency=6, shards=2))
    before = transcripts(run_dir)
    # as a killed shard leaves it: its last segment still a live JSONL file, not yet compacted
    (steps,) = (run_dir / "log").glob("steps-s001-*.parquet")
    lines = pq.read_table(steps).column("record").to_pylist()
    steps.unlink()
    next((run_dir / "log").glob("messages-s001-*.parquet")).unlink()
    (run_dir / "log" / "live-s001-00000.jsonl").write_text("".join(line + "\n" for line in lines))
    assert transcripts(run_dir) == before  # readers take live segments as they are
    from academe.simulation.log import DialogueLog

    DialogueLog(run_dir)  # the run's writer on resume, with any number of shards
    assert not list((run_dir / "log").glob("live-*")) and transcripts(run_dir) == before
