"""Round-level programs on local Ray with tiny models: rounds, two trained models, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from academe.simulation.config import ConfigError, dump_config
from academe.simulation.log import read_messages, read_steps
from academe.simulation.program_runner import ProgramDiverged
from academe.simulation.simulate import resume_run, start_run
from simulations import program_config, program_decisions, transcripts

ACADEME = str(Path(sys.executable).with_name("academe"))
TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture(scope="module")
def uninterrupted(ray_local, tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("whole")
    return start_run(program_config(out, tiny_model))


def test_two_rounds_train_solver_and_generator_each_with_its_own_trainer(uninterrupted):
    run_dir, summary = uninterrupted
    assert summary["program"] == "socratic-zero" and summary["rounds"] == 2
    trained = [(t["round"], t["role"], t["model"], t["version"], t["skipped"]) for t in summary["trained"]]
    assert trained == [(0, "solver", "solver", 1, None), (0, "generator", "generator", 1, None),
                       (1, "solver", "solver", 2, None), (1, "generator", "generator", 2, None)]
    assert [(e["round"], e["version"]) for e in summary["evaluated"]] == [(0, 0), (0, 1), (1, 2)]
    assert sorted(p.name for p in (run_dir / "checkpoints" / "solver").iterdir()) == ["v00001", "v00002"]
    assert sorted(p.name for p in (run_dir / "checkpoints" / "generator").iterdir()) == ["v00001", "v00002"]
    frame = read_messages(run_dir).to_pandas()
    solver = frame[frame.role == "solver"]
    # round 0 attempts come from version 0, round 1 from version 1: every reply carries its version
    assert set(solver[solver["round"] == 0].model_version) == {0} and set(solver[solver["round"] == 1].model_version) == {1}
    assert set(frame[frame.role == "teacher"].agent) == {"teacher"}
    assert set(frame.protocol) == {"solve-and-verify", "make-problem"}
    # the raw prompt the protocol built, and the prompt as sent (here no persona: the same)
    assert (frame.asked == frame.messages).all()
    final = program_decisions(run_dir)[-1]["state"]
    made = [p for p in final["pool"] if p["task"]["origin"] is not None]
    assert made and all(p["task"]["origin"]["agent"] == "teacher" for p in made)
    assert {p["task"]["origin"]["round"] for p in made} == {0, 1}
    assert (run_dir / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_verify_re_executes_a_programs_decisions_and_episodes(uninterrupted, tmp_path):
    import shutil

    from academe.simulation.verify import verify_run

    run_dir, _ = uninterrupted
    result = verify_run(run_dir)
    episodes = {r.episode for r in read_steps(run_dir)}
    assert result.ok and result.decisions == len(program_decisions(run_dir)) and result.episodes == len(episodes)
    changed = tmp_path / "changed"
    shutil.copytree(run_dir, changed)
    config = changed / "config.yaml"
    config.write_text(config.read_text().replace("new_per_round: 3", "new_per_round: 2"))
    (divergence, *_) = verify_run(changed).divergences
    assert divergence.episode is None and divergence.field == "action.state"  # the options live in the state


# Decision 5 starts round 0's generator training, decision 9 round 1's make-problem episodes.
@pytest.mark.parametrize("kill_at", [5, 9], ids=["while-training", "while-making-problems"])
def test_a_program_killed_mid_round_resumes_to_the_same_transcripts_and_pool(uninterrupted, tmp_path, tiny_model,
                                                                             kill_at):
    reference, _ = uninterrupted
    cfg_file = tmp_path / "sz.yaml"
    cfg_file.write_text(dump_config(program_config(tmp_path / "killed", tiny_model)))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")}
    driver = subprocess.Popen([ACADEME, "run", str(cfg_file), "--quiet"], start_new_session=True, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not killable(tmp_path / "killed", kill_at + 1):
            assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
            time.sleep(0.05)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    (run_dir,) = (tmp_path / "killed").iterdir()
    assert len(program_decisions(run_dir)) < len(program_decisions(reference))  # it was cut short
    assert not (run_dir / "summary.json").exists()

    summary = resume_run(run_dir)
    assert summary["rounds"] == 2
    assert transcripts(run_dir) == transcripts(reference)
    assert program_decisions(run_dir) == program_decisions(reference)  # every state, pool included
    steps = [(r.episode, r.step) for r in read_steps(run_dir)]
    assert len(steps) == len(set(steps))
    trained = [(t["role"], t["version"]) for t in summary["trained"]]
    assert trained == [("solver", 1), ("generator", 1), ("solver", 2), ("generator", 2)]  # none trained twice
    changed = run_dir / "config.yaml"
    changed.write_text(changed.read_text().replace("new_per_round: 3", "new_per_round: 2"))
    (run_dir / "summary.json").unlink()
    with pytest.raises(ConfigError, match="program.options.new_per_round: 3 -> 2"):
        resume_run(run_dir)
    (run_dir / "started.json").unlink()  # no record of the start (an older folder): the program replay catches it
    with pytest.raises(ProgramDiverged, match="differs from the logged one"):
        resume_run(run_dir)


def killable(out: Path, decisions: int) -> bool:
    runs = list(out.glob("*/program.jsonl")) if out.exists() else []
    return bool(runs) and sum('"decision"' in line for line in runs[0].read_text().splitlines()) >= decisions


def test_fan_out_answers_reach_the_judge_in_seat_order_and_share_a_model_batch(ray_local, tmp_path):
    from academe.simulation.config import parse_config
    speaker = {"kind": "scripted", "path": "agents_for_tests:persona_speaker", "num_cpus": 0}
    cfg = parse_config({
        "run": {"name": "panel", "episodes": 3, "concurrency": 3, "out_dir": str(tmp_path)},
        "protocol": {"name": "panel_protocol:panel"},
        "models": {"shared": speaker, "other": speaker,
                   "judge": {"kind": "scripted", "path": "agents_for_tests:judge_that_repeats", "num_cpus": 0}},
        "agents": {"student": [{"name": "ann", "model": "shared", "persona": "Ann"},
                               {"name": "bob", "model": "other", "persona": "Bob"},
                               {"name": "cy", "model": "shared", "persona": "Cy"}],
                   "judge": {"model": "judge"}},
    })
    run_dir, summary = start_run(cfg)
    assert summary["episodes"] == 3 and summary["errors"] == 0
    frame = read_messages(run_dir).to_pandas()
    students = frame[frame.role == "student"].sort_values(["episode", "ask"])
    assert list(students.groupby("episode").agent.apply(list))[0] == ["ann", "bob", "cy"]
    assert list(students.seat[:3]) == [0, 1, 2]
    shared = students[students.agent.isin(["ann", "cy"])]
    assert shared.started.nunique() == 1  # both agents' turns, of all three episodes, in one batch of their model
    judge = frame[frame.role == "judge"]
    for _, turn in judge.iterrows():
        seen = json.loads(turn.asked)[-1]["content"]
        assert seen.index("ann: Ann says") < seen.index("bob: Bob says") < seen.index("cy: Cy says")
    outcomes = [r.outcome for r in read_steps(run_dir) if r.outcome]
    assert all(o.metrics["answers"] == 3 for o in outcomes)


def test_a_program_log_line_torn_by_a_crash_is_cut_and_never_counts(tmp_path):
    from academe.simulation.program_runner import DecisionRecord, ProgramLog, ResultRecord
    log = ProgramLog(tmp_path)
    log.write(DecisionRecord(n=0, round=0, kind="evaluate", stage="measured", action={"kind": "evaluate"}, time=1.0))
    log.write(ResultRecord(n=0, result={"kind": "evaluated"}, seconds=1.0, time=2.0))
    with open(tmp_path / "program.jsonl", "a") as f:
        f.write('{"type": "decision", "n": 1, "round": 0, "ki')  # the driver died mid-write
    decisions, results = ProgramLog(tmp_path).read()
    assert [d.n for d in decisions] == [0] and list(results) == [0]
    assert (tmp_path / "program.jsonl").read_text().endswith("}\n")


def test_llm2llm_retrains_a_tiny_student_from_the_base_on_data_grown_from_its_mistakes(ray_local, tmp_path, tiny_model):
    from simulations import llm2llm_config
    harder = {"count": 3, "tasks": {"source": "generated", "steps": 2, "seed": 5}}
    run_dir, summary = start_run(llm2llm_config(tmp_path, tiny_model, also={"two-step": harder}))
    assert [(t["version"], t["examples"]) for t in summary["trained"]] == [(1, 4), (2, 8)]  # a tiny model errs on all
    assert [(e["version"], sorted(e["also"])) for e in summary["evaluated"]] == [(v, ["two-step"]) for v in (0, 1, 2)]
    iterations = summary["result"]["iterations"]
    assert iterations[0]["wrong"] == 4 and iterations[0]["written"] == 4 and summary["result"]["synthetic"] == 4
    frame = read_messages(run_dir).to_pandas()
    assert set(frame[frame.protocol == "answer"].model_version) == {1}  # the seed items, asked of version 1
    assert set(frame[frame.protocol == "make-problem"].role) == {"teacher"}


def test_lion_imitates_discriminates_and_generates_with_a_tiny_student(ray_local, tmp_path, tiny_model):
    from simulations import lion_config
    run_dir, summary = start_run(lion_config(tmp_path, tiny_model))
    assert [(t["version"], t["examples"]) for t in summary["trained"]] == [(1, 4), (2, 6)]
    first = summary["result"]["rounds"][0]
    assert first["hard"] == 4 and first["new_hard"] == 2  # a tiny student loses every comparison; 4 new at most
    frame = read_messages(run_dir).to_pandas()
    compared = frame[frame.protocol == "compare"]
    assert set(compared.role) == {"teacher", "student"}  # the grader refereed: no referee turns
    assert set(compared[compared.role == "student"].model_version) == {1}


def test_lbt_examines_two_students_of_different_models_and_trains_the_teacher(ray_local, tmp_path, tiny_model):
    from simulations import lbt_config
    run_dir, summary = start_run(lbt_config(tmp_path, tiny_model))
    (round_0,) = summary["result"]["rounds"]
    assert round_0["lessons"] == 3 and round_0["pairs"] > 0
    assert [(t["role"], t["version"]) for t in summary["trained"]] == [("teacher", 1)]
    frame = read_messages(run_dir).to_pandas()
    exam = frame[(frame.protocol == "teach-and-exam") & (frame.phase == "exam")]
    assert set(exam.agent) == {"tiny", "guesser"} and len(exam) == 3 * 3 * 2 * 2  # lessons x rationales x exam x students
    assert set(exam.model) == {"tiny-llama", "scripted:guessing_student"}


def test_a_field_academe_gained_since_a_decision_was_logged_does_not_make_it_diverge():
    from academe.simulation.program_runner import same_as_logged
    logged = {"kind": "run-episodes", "tasks": [{"id": "a", "attempt": "x"}]}
    assert same_as_logged(logged, {"kind": "run-episodes", "tasks": [{"id": "a", "attempt": "x", "difficulty": "same"}]})
    assert not same_as_logged(logged, {"kind": "run-episodes", "tasks": [{"id": "a", "attempt": "y"}]})
    assert not same_as_logged(logged, {"kind": "run-episodes", "tasks": [{"id": "a"}]})  # a field gone
    assert not same_as_logged(logged, {"kind": "run-episodes", "tasks": []})


def test_the_learning_zone_curriculum_runs_on_ray_and_keeps_one_new_problem_per_failure(ray_local, tmp_path,
                                                                                        tiny_model):
    run_dir, summary = start_run(program_config(tmp_path, tiny_model, rounds=1, curriculum="learning-zone"))
    (report,) = summary["result"]["rounds"]
    asked = read_messages(run_dir).to_pandas()
    made = asked[asked.protocol == "make-problem"]
    wording = [next(w for w in ("a little easier", "about the same", "a little harder") if w in text)
               for text in made.sort_values("episode").messages]  # the prompt, as JSON text
    assert wording == ["a little easier", "about the same", "a little harder"] * report["failures"]
    assert report["made"] == len(made) - sum(v for k, v in report["dropped"].items() if k != "outside the learning zone")
    assert report["dropped"]["outside the learning zone"] == report["made"] - sum(report["new_zones"].values())
