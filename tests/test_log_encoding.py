"""The log writes each step as changes to the episode's previous step: bytes per message stay flat
as dialogues grow, every record reads back whole, and a missing step is reported, not guessed."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from academe.agents import AgentSpec, ModelSpec
from academe.protocols import socratic
from academe.protocols.socratic import TutoringOptions
from academe.protocols.tasks import generate_word_problems
from academe.simulation.actors import ModelPool
from academe.simulation.log import DialogueLog, LogDamaged, read_steps
from academe.simulation.log_encoding import decode, encode
from academe.simulation.runner import Batch, Runner

AGENTS = {"teacher": AgentSpec(name="teacher", role="teacher", model="teacher", persona="Be kind."),
          "student": AgentSpec(name="student", role="student", model="student")}


def long_dialogues(out: Path, student_turns: int, episodes: int = 20) -> tuple[Path, int]:
    pool = ModelPool({"student": ModelSpec(kind="scripted", path="agents_for_tests:never_right"),
                      "teacher": ModelSpec(kind="scripted", path="agents_for_tests:always_probing")}, use_ray=False)
    runner = Runner(pool, DialogueLog(out), run_id="enc", concurrency=episodes)
    batch = Batch(socratic, TutoringOptions(max_student_turns=student_turns), {a.role: (a,) for a in AGENTS.values()},
                  dict(enumerate(generate_word_problems(episodes, steps=1, seed=3))))
    runner.run(batch)
    return out, runner.progress.messages


def bytes_per_message(run_dir: Path, messages: int) -> float:
    lines = [line for p in (run_dir / "log").glob("steps-*.parquet")
             for line in pq.read_table(p, columns=["record"]).column("record").to_pylist()]
    return sum(map(len, lines)) / messages


def test_bytes_per_message_do_not_grow_with_the_dialogue(tmp_path):
    short = bytes_per_message(*long_dialogues(tmp_path / "short", 2))
    long = bytes_per_message(*long_dialogues(tmp_path / "long", 32))
    assert long <= 1.1 * short, (short, long)  # whole records: ~3x more per message at 63 messages


def test_every_record_reads_back_whole(tmp_path):
    run_dir, _ = long_dialogues(tmp_path / "run", 6, episodes=4)
    records = list(read_steps(run_dir))
    memories_out, memories_in = {}, {}
    for record in records:  # encoding then decoding gives the record itself
        data = json.loads(record.model_dump_json())
        assert decode(json.loads(json.dumps(encode(data, memories_out))), memories_in) == data
    last = max(records, key=lambda r: r.step)
    assert last.patch is None and len(last.state["dialogue"]) == last.step  # the attempt, then one per step
    teacher = max((r for r in records if r.turns and r.turns[0].role == "teacher"), key=lambda r: r.step)
    sent = teacher.turns[0].prompt.messages  # persona, brief, then the dialogue so far: whole again
    assert sent[0].content == "Be kind." and len(sent) == 2 + teacher.step - 1


def test_a_step_missing_from_the_log_is_reported_not_guessed(tmp_path):
    run_dir, _ = long_dialogues(tmp_path / "run", 4, episodes=2)
    lines = [line for p in sorted((run_dir / "log").glob("steps-*.parquet"))
             for line in pq.read_table(p, columns=["record"]).column("record").to_pylist()]
    cut = next(i for i, line in enumerate(lines) if json.loads(line)["step"] == 3)
    for p in (run_dir / "log").glob("*.parquet"):
        p.unlink()
    (run_dir / "log" / "live-00000.jsonl").write_text("".join(line + "\n" for i, line in enumerate(lines) if i != cut))
    episode = json.loads(lines[cut])["episode"]
    with pytest.raises(LogDamaged, match=f"episode {episode} step 4 is written as changes to step 3, which is missing"):
        list(read_steps(run_dir))
    damaged: list[str] = []
    kept = list(read_steps(run_dir, damaged=damaged))
    assert kept and all(not (r.episode == episode and r.step > 3) for r in kept) and damaged


def test_a_log_of_whole_records_still_reads_and_grows_whole(tmp_path):
    (tmp_path / "old" / "log").mkdir(parents=True)
    (tmp_path / "old" / "log" / "format.json").write_text('{"format": 2}')
    source, _ = long_dialogues(tmp_path / "new", 3, episodes=3)
    records = list(read_steps(source))
    old = DialogueLog(tmp_path / "old")
    old.append(records)
    old.close()
    assert list(read_steps(tmp_path / "old")) == records
    lines = pq.read_table(next((tmp_path / "old" / "log").glob("steps-*.parquet"))).column("record").to_pylist()
    assert all(json.loads(line)["patch"] is None and json.loads(line)["state"] for line in lines)


def test_a_tail_of_the_log_reads_each_record_once_across_compactions(tmp_path):
    from academe.simulation.log import LogTail

    run_dir, _ = long_dialogues(tmp_path / "whole", 6, episodes=6)
    everything = [r.model_dump_json() for r in read_steps(run_dir)]
    # the same records appended in small batches to a log whose segments compact every 7 rows,
    # read between the batches (sometimes mid-segment, sometimes just after a compaction)
    log = DialogueLog(tmp_path / "grown", segment_rows=7)
    tail, seen = LogTail(tmp_path / "grown"), []
    records = list(read_steps(run_dir))
    for start in range(0, len(records), 3):
        log.append(records[start:start + 3])
        if start % 2 == 0:
            seen += [r.model_dump_json() for r in tail.read()]
    log.close()
    seen += [r.model_dump_json() for r in tail.read()]
    assert tail.read() == []
    assert seen == everything and len(list((tmp_path / "grown" / "log").glob("steps-*.parquet"))) > 3


def test_reading_some_episodes_of_a_live_segment_equals_filtering_the_whole(tmp_path):
    run_dir, _ = long_dialogues(tmp_path / "whole", 4, episodes=6)
    records = list(read_steps(run_dir))
    log = DialogueLog(tmp_path / "live", segment_rows=10_000)
    log.append(records[: len(records) // 2])
    log.append(records[len(records) // 2:])  # not closed: everything is in the live segment
    assert list((tmp_path / "live" / "log").glob("live-*.jsonl"))
    some = [r.model_dump_json() for r in read_steps(tmp_path / "live", episodes=range(2, 4))]
    assert some == [r.model_dump_json() for r in records if r.episode in range(2, 4)] and some
    (live,) = (tmp_path / "live" / "log").glob("live-*.jsonl")
    with open(live, "a") as f:
        f.write("[1, 2]\n")  # JSON, but not a record: named, not skipped, whatever the filter
    with pytest.raises(LogDamaged, match=r"line \d+ is not a step record"):
        list(read_steps(tmp_path / "live", episodes=range(2, 4)))
