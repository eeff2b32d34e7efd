"""Replay, verified re-execution, forks and comparison, on real run folders."""

import importlib
import json

import pytest
from typer.testing import CliRunner

from academe.protocols.socratic import MOVE_TAG
from academe.simulation.cli import app
from academe.simulation.fork import ForkPoint, make_fork
from academe.simulation.lineage import read_lineage
from academe.simulation.log import read_steps
from academe.simulation.simulate import resume_run
from simulations import SCRIPTED_STUDENT, academe, transcripts

cli = CliRunner()
socratic_module = importlib.import_module("academe.protocols.socratic")
KNOWING = {"kind": "scripted", "path": "academe.protocols.oracles:reference_answerer", "num_cpus": 0}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Twelve Socratic episodes, scripted student and teacher, in this process."""
    out = tmp_path_factory.mktemp("runs")
    code, output = academe("run", "--quiet", "--set", f"run.out_dir={out}", "--set", "run.episodes=12",
                           "--set", "ray.enabled=false", "--set", "tasks.steps=2",
                           "--set", f"models.smollm2={{kind: scripted, path: '{SCRIPTED_STUDENT['path']}'}}")
    assert code == 0, output
    (found,) = out.iterdir()
    return found


def as_json(*args) -> list[dict]:
    result = cli.invoke(app, ["replay", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def test_replay_filters_episodes_and_turns(run_dir):
    everything = as_json(run_dir)
    assert [e["episode"] for e in everything] == list(range(12))
    unsolved = as_json(run_dir, "--outcome", "unsolved")
    assert unsolved and {e["status"] for e in unsolved} == {"unsolved"}
    assert len(unsolved) == sum(e["status"] == "unsolved" for e in everything)
    teacher = as_json(run_dir, "--role", "teacher")
    assert teacher and all(t["role"] == "teacher" and t["move"] for e in teacher for t in e["turns"])
    assert [e["episode"] for e in as_json(run_dir, "--episode", 3, "--episode", 5)] == [3, 5]
    assert [e["episode"] for e in as_json(run_dir, "--limit", 2, "--offset", 4)] == [4, 5]
    assert as_json(run_dir, "--version", 1) == []  # nothing was trained
    assert as_json(run_dir, "--agent", "student")[0]["turns"][0]["agent"] == "student"
    code, out = academe("replay", run_dir, "--episode", 1)
    assert code == 0 and "teacher (focus) step 2" in out and "scripted:socratic_teacher v0" in out


def test_the_move_label_annotates_the_log_but_is_not_said_to_the_student(run_dir):
    student_prompts = [m.content for r in read_steps(run_dir) for t in r.turns if t.role == "student"
                       for m in t.prompt.messages]
    assert student_prompts and not any(MOVE_TAG.match(text) for text in student_prompts)
    teacher_turns = [t.reply.text for r in read_steps(run_dir) for t in r.turns if t.role == "teacher"]
    assert teacher_turns and all(MOVE_TAG.match(text) for text in teacher_turns)


def test_bad_folders_and_episodes_get_clear_errors(run_dir, tmp_path):
    code, out = academe("replay", tmp_path)
    assert code == 2 and "is not a run folder: a run folder holds config.yaml and log/" in out
    code, out = academe("replay", run_dir, "--episode", 40)
    assert code == 2 and "episode 40 is not in" in out and "episodes 0..11" in out
    code, out = academe("replay", run_dir, "--outcome", "maybe")
    assert code == 2 and "--outcome 'maybe'" in out


def test_a_damaged_log_replays_what_is_whole_and_names_the_rest(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(run_dir, copy)
    good = (copy / "log").glob("steps-*.parquet").__next__()
    records = [r.model_dump_json() for r in read_steps(copy)][:3]
    (copy / "log" / "live-00007.jsonl").write_text(records[0] + "\n" + "{not a record\n" + records[1] + "\n")
    result = cli.invoke(app, ["replay", str(copy), "--json"])
    text = " ".join(result.stderr.split()) if result.stderr_bytes else " ".join(result.output.split())
    assert result.exit_code == 1 and "live-00007.jsonl line 2: not a step record" in text
    assert sum(line.startswith("{") for line in result.stdout.splitlines()) == 12
    good.write_bytes(good.read_bytes()[:200])  # a segment cut short
    result = cli.invoke(app, ["replay", str(copy)])
    assert result.exit_code == 1 and f"{good.name}: cannot be read" in " ".join(result.output.split())


def test_verify_passes_on_a_fresh_run_and_names_the_divergence_after_a_prompt_change(run_dir, monkeypatch):
    code, out = academe("replay", run_dir, "--verify")
    assert code == 0 and "verified: 12 episodes" in out
    original = socratic_module.teacher_view

    def one_word_changed(s):  # "Guide the student with one short question" -> "... one brief question"
        first, *rest = original(s)
        return [first.replace(content=first.content.replace("one short question", "one brief question")), *rest]

    monkeypatch.setattr(socratic_module, "teacher_view", one_word_changed)
    result = cli.invoke(app, ["replay", str(run_dir), "--verify"])
    first_unsolved_attempt = next(r for r in read_steps(run_dir) if r.step == 1 and r.asks)
    assert result.exit_code == 1
    assert f"episode {first_unsolved_attempt.episode} step 1: state.dialogue" not in result.output
    assert f"episode {first_unsolved_attempt.episode} step 1: asks[0].asked[0].content" in result.output
    assert "one short question" in result.output and "one brief question" in result.output


def test_a_greedy_fork_with_the_original_agents_says_what_the_parent_said(run_dir, tmp_path):
    code, out = academe("fork", run_dir, "--all", "--at", 0, "--quiet", "--name", "same")
    assert code == 0, out
    (fork_dir,) = run_dir.parent.glob("same-*")
    assert transcripts(fork_dir) == transcripts(run_dir)
    lineage = read_lineage(fork_dir)
    assert lineage.kind == "fork" and lineage.episodes[3].episode == 3 and lineage.episodes[3].step == 0
    assert academe("replay", fork_dir, "--verify")[0] == 0


def test_fork_the_unsolved_episodes_with_another_student_and_compare(run_dir, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text(json.dumps({"models": {"answers": KNOWING}, "agents": {"knower": {"role": "student",
                                                                                      "model": "answers"}}}))
    unsolved = [e["episode"] for e in as_json(run_dir, "--outcome", "unsolved")]
    code, out = academe("fork", run_dir, "--unsolved", "--at", 2, "--agent", "student=knower", "--with", extra,
                        "--quiet", "--name", "knower")
    assert code == 0, out
    (fork_dir,) = run_dir.parent.glob("knower-*")
    forked = as_json(fork_dir)
    assert [e["parent"]["episode"] for e in forked] == unsolved
    for view in forked:
        inherited = [t for t in view["turns"] if t["inherited"]]
        assert [t["step"] for t in inherited] == [1, 2] and view["status"] == "solved"
        assert view["turns"][-1]["agent"] == "knower" and view["turns"][0]["agent"] == "student"
    assert academe("replay", fork_dir, "--verify")[0] == 0
    code, out = academe("compare", run_dir, fork_dir, "--plot", tmp_path / "c.png")
    assert code == 0 and f"{len(unsolved)} episodes paired by parent" in out
    assert f"unsolved -> solved: {len(unsolved)}" in out and (tmp_path / "c.png").stat().st_size > 10_000


def test_a_fork_is_a_run_that_resumes_like_any_other(run_dir, tmp_path):
    fork_dir = make_fork(run_dir, [ForkPoint(0, 1), ForkPoint(0, 3)], {}, out_dir=str(tmp_path))
    first = resume_run(fork_dir)
    (fork_dir / "summary.json").unlink()  # as if killed at its very end
    again = resume_run(fork_dir)  # nothing left to do: the same outcomes, no new turns
    assert first["episodes"] == again["episodes"] == 2 and again["messages_this_session"] == 0
    assert resume_run(fork_dir)["already_finished"]
    parent, forked = transcripts(run_dir)[0], transcripts(fork_dir)
    assert forked[0][:2] == parent[:2] and forked[1][:4] == parent[:4]  # kept turns, as logged
    assert forked[0] == parent  # scripted agents, same seeds: the live part says the same


def test_forking_before_each_teacher_turn_lets_the_new_teacher_say_one_turn(run_dir, tmp_path):
    code, out = academe("fork", run_dir, "--episode", 0, "--episode", 1, "--before", "teacher", "--stop-after", 1,
                        "--quiet", "--name", "next-turn")
    assert code == 0, out
    (fork_dir,) = run_dir.parent.glob("next-turn-*")
    teacher_asks = sum(1 for r in read_steps(run_dir) if r.episode in (0, 1) for a in r.asks if a.role == "teacher")
    forked = as_json(fork_dir)
    assert len(forked) == teacher_asks
    for view in forked:
        live = [t for t in view["turns"] if not t["inherited"]]
        assert [t["role"] for t in live] == ["teacher"]
        assert view["outcome"]["metrics"] == {"stopped_at_step": view["parent"]["step"] + 1}


@pytest.mark.parametrize("args,message", [
    (["--episode", 0, "--at", 30], "cannot fork at step 30"),
    (["--episode", 99, "--at", 0], "episode 99 is not in the parent run"),
    (["--episode", 0, "--at", 0, "--agent", "judge=x"], "has no role or agent 'judge'"),
    (["--episode", 0, "--at", 0, "--agent", "student=nobody"], "no agent or model named 'nobody'"),
    (["--episode", 0, "--at", 0, "--agent", "student=teacher"], "agent 'teacher' plays 'teacher'"),
    (["--episode", 0, "--at", 0, "--agent", "student=smollm2@v3"], "did not train 'smollm2'"),
    (["--episode", 0], "say where to fork"),
])
def test_bad_forks_say_what_is_wrong_and_write_nothing(run_dir, args, message):
    before = sorted(p.name for p in run_dir.parent.iterdir())
    code, out = academe("fork", run_dir, *args, "--quiet")
    assert code == 2 and message in out
    assert sorted(p.name for p in run_dir.parent.iterdir()) == before


def test_a_fork_of_a_fork_keeps_the_first_runs_tasks_and_seeds(run_dir, tmp_path):
    first = make_fork(run_dir, [ForkPoint(5, 0), ForkPoint(7, 0)], {}, out_dir=str(tmp_path / "a"))
    resume_run(first)
    second = make_fork(first, [ForkPoint(1, 2)], {}, out_dir=str(tmp_path / "b"))  # episode 1 of it is 7
    resume_run(second)
    origin = read_lineage(second).episodes[0]
    assert (origin.episode, origin.root, origin.run) == (1, 7, str(first.resolve()))
    assert transcripts(second)[0] == transcripts(run_dir)[7]
    assert academe("replay", second, "--verify")[0] == 0
