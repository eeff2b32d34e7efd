"""MathDial: importing real tutoring dialogues, their statistics, forking a model teacher into them,
and tutoring a student seeded with a row's profile and attempt."""

import json
from collections import Counter

import pytest

from academe.protocols.mathdial import read_mathdial
from academe.simulation.config import parse_config
from academe.simulation.log import read_steps
from academe.simulation.mathdial import import_mathdial
from academe.simulation.replay import load_views
from academe.simulation.simulate import start_run
from simulations import academe
from tests_paths import MATHDIAL

ROWS = [json.loads(line) for line in MATHDIAL.read_text().splitlines()]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("md")
    run_dir, stats, problems = import_mathdial(MATHDIAL, str(out))
    return run_dir, stats, problems


def test_the_dev_file_imports_whole_with_its_statistics(imported):
    run_dir, stats, problems = imported
    assert problems == [] and stats["dialogues"] == len(ROWS)
    conversations = [r["conversation"].split("|EOM|") for r in ROWS]
    teacher_said = sum(t.startswith("Teacher:") for c in conversations for t in c)
    assert stats["turns"]["teacher"] + stats["turns"]["student"] + stats["merged_turns"] == sum(map(len, conversations))
    assert sum(stats["teacher_moves"].values()) == stats["turns"]["teacher"] <= teacher_said
    verdicts = Counter(r["self-correctness"] if r["self-correctness"] not in (None, "None") else "not given"
                       for r in ROWS)
    assert stats["self_correctness"] == dict(verdicts)
    assert stats["at_k"]["success@k"]["1"] == 0.0  # k=1 is the student's incorrect solution
    assert 0.5 < stats["success_rate"] <= 1 and 0 < stats["telling_rate"] < 0.5
    views = load_views(run_dir)
    assert len(views) == len(ROWS) and {t.model for v in views for t in v.turns} == {"human"}
    first = views[0]
    assert first.task["attempt"] == ROWS[0]["student_incorrect_solution"].strip()
    assert first.turns[0].role == "teacher" and first.turns[0].move == "generic"
    assert first.turns[0].text.startswith("(generic) Hi Mariana")


def test_student_turns_headed_by_the_students_name_are_student_turns(imported):
    run_dir, _, _ = imported
    named = next(i for i, r in enumerate(ROWS) if "|EOM|Mariana:" in r["conversation"])
    view = load_views(run_dir)[named]
    assert [t.role for t in view.turns] == ["teacher", "student"] * (len(view.turns) // 2) + \
        ["teacher"] * (len(view.turns) % 2)
    assert not any(t.text.startswith("Mariana:") for t in view.turns)


def test_quirky_rows_are_read_as_meant_and_bad_rows_are_reported_by_line(tmp_path):
    good = dict(ROWS[0])
    strings = dict(good, qid="77", **{"self-correctness": None, "self-typical-confusion": "4"},
                   ground_truth="It costs 1,000 - 400 = 600.\n 600",
                   conversation="Teacher: ()Hi|EOM|Teacher: (probing)What is 1000 - 400?|EOM|Student: 600")
    rows = [json.dumps(good), "{not json", json.dumps(strings),
            json.dumps(dict(good, conversation="Student: hi|EOM|Teacher: (focus)ok")),
            json.dumps(dict(good, conversation="Teacher: (focus)hi|EOM|Zed: who am I")),
            json.dumps({k: v for k, v in good.items() if k != "conversation"}),
            json.dumps(dict(good, ground_truth="no number here"))]
    path = tmp_path / "quirky.jsonl"
    path.write_text("\n".join(rows) + "\n")
    dialogues, problems = read_mathdial(path)
    assert [d.line for d in dialogues] == [1, 3]
    assert problems == ["line 2: not JSON (Expecting property name enclosed in double quotes)",
                        "line 4: the conversation opens with the student; MathDial's teacher speaks first",
                        "line 5: turn 'Zed: who am I' is spoken by 'Zed': neither Teacher, Student nor the "
                        "student's name 'Mariana'",
                        "line 6: missing or empty: conversation",
                        "line 7: ground_truth has no final number"]
    quirky = dialogues[1]
    assert quirky.task.id == "mathdial-77" and quirky.task.answer == "600" and quirky.self_correctness is None
    assert quirky.merged == 1 and quirky.turns[0].text == "Hi\nWhat is 1000 - 400?"
    assert quirky.turns[0].move == "probing"  # the unlabelled turn takes the label of the one joined to it
    code, out = academe("import", "mathdial", path, "--out", tmp_path / "runs")
    assert code == 0 and "left out" in out and "line 5" in out and "2 (5 row(s) left out)" in out


def test_a_file_with_nothing_to_import_writes_nothing(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("[1, 2]\n")
    code, out = academe("import", "mathdial", path, "--out", tmp_path / "runs")
    assert code == 2 and "no row could be imported" in out and "line 1: a row is a JSON object" in out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    code, out = academe("import", "mathdial", tmp_path / "missing.jsonl")
    assert code == 2 and "does not exist" in out


def test_a_model_teacher_says_the_next_teacher_turn_beside_the_human_one(imported, tmp_path):
    run_dir, _, _ = imported
    extra = tmp_path / "teacher.yaml"
    extra.write_text(json.dumps({"models": {"walker": {"kind": "scripted", "num_cpus": 0,
                                                       "path": "academe.protocols.oracles:socratic_teacher"}},
                                 "agents": {"tutor": {"role": "teacher", "model": "walker"}}}))
    code, out = academe("fork", run_dir, "--episode", 0, "--episode", 1, "--before", "teacher", "--stop-after", 1,
                        "--agent", "teacher=tutor", "--with", extra, "--quiet", "--name", "next-turn")
    assert code == 0, out
    (fork_dir,) = run_dir.parent.glob("next-turn-*")
    human_teacher_turns = sum(1 for v in load_views(run_dir) if v.episode in (0, 1) for t in v.turns
                              if t.role == "teacher")
    code, out = academe("export", "pairs", fork_dir)
    assert code == 0 and f"wrote {human_teacher_turns} pairs" in out
    pairs = [json.loads(line) for line in (fork_dir / "pairs.jsonl").read_text().splitlines()]
    assert {p["parent"]["model"] for p in pairs} == {"human"} and {p["fork"]["agent"] for p in pairs} == {"tutor"}
    first = pairs[0]
    assert first["parent"]["text"].startswith("(generic) Hi Mariana") and first["fork"]["text"].startswith("(focus)")
    code, _ = academe("export", "html", fork_dir)
    assert code == 0 and "in the parent" in (fork_dir / "dialogues.html").read_text()


def test_the_people_of_an_imported_dialogue_cannot_be_asked_to_speak(imported):
    run_dir, _, _ = imported
    code, out = academe("fork", run_dir, "--episode", 3, "--at", 0, "--quiet", "--name", "again")
    assert code == 1 and "every episode ended in an error" in out
    (fork_dir,) = run_dir.parent.glob("again-*")
    (view,) = load_views(fork_dir)
    assert view.status == "error" and "a person spoke this turn" in view.outcome["error"]
    code, out = academe("replay", run_dir, "--verify")
    assert code == 1 and "holds imported dialogues" in out


def test_a_student_seeded_with_a_rows_profile_and_attempt_is_tutored(tmp_path):
    config = parse_config({
        "run": {"name": "md", "episodes": 6, "out_dir": str(tmp_path)},
        "protocol": {"name": "socratic", "options": {"max_student_turns": 3}},
        "tasks": {"source": "mathdial", "path": str(MATHDIAL)},
        "models": {"s": {"kind": "scripted", "path": "academe.protocols.oracles:guessing_student", "num_cpus": 0},
                   "t": {"kind": "scripted", "path": "academe.protocols.oracles:socratic_teacher", "num_cpus": 0}},
        "agents": {"teacher": {"model": "t"}, "student": {"model": "s"}},
        "ray": {"enabled": False}})
    run_dir, summary = start_run(config)
    assert summary["episodes"] == 6 and "success@k" in summary["at_k"] and summary["at_k"]["success@k"]["1"] == 0
    first = [r for r in read_steps(run_dir) if r.episode == 0]
    assert first[0].next_phase == "guide"  # the teacher opens: the attempt is given
    student_prompt = next(t.prompt.messages for r in first for t in r.turns if t.role == "student")
    assert student_prompt[0].role == "system" and "Mariana is a 7th grade student" in student_prompt[0].content
    assert student_prompt[2].role == "assistant" and student_prompt[2].content == ROWS[0]["student_incorrect_solution"].strip()
    assert academe("replay", run_dir, "--verify")[0] == 0


def test_the_shipped_sample_imports_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out = academe("import", "mathdial", "sample:mathdial", "--out", "runs")
    assert code == 0 and "│ 32 (0 row(s) left out)" in out
    code, out = academe("import", "mathdial", "sample:nothing", "--out", "runs")
    assert code == 2 and "no such sample; academe ships sample:gsm8k, sample:mathdial" in out
