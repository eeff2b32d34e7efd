"""Open instructions with no reference answer, scored by a judge: nothing in the runner or summary
assumes numbers or a solved/unsolved verdict."""

import json

from typer.testing import CliRunner

from academe.simulation.cli import app
from academe.simulation.config import dump_config, parse_config
from academe.simulation.log import read_steps
from academe.simulation.simulate import start_run


def open_config(tmp_path):
    tasks = tmp_path / "instructions.jsonl"
    rows = [{"instruction": "Write a haiku about rivers."}, {"instruction": "Explain recursion", "input": "to a child"},
            {"question": "Name three prime numbers."}]
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return parse_config({
        "run": {"name": "open", "episodes": 6, "concurrency": 6, "out_dir": str(tmp_path / "runs")},
        "protocol": {"name": "judged_protocol:critique"},
        "tasks": {"source": "file", "path": str(tasks), "grader": "none"},
        "models": {"student": {"kind": "scripted", "path": "agents_for_tests:rambler", "num_cpus": 0},
                   "judge": {"kind": "scripted", "path": "agents_for_tests:length_judge", "num_cpus": 0}},
        "agents": {"student": {"model": "student"}, "judge": {"model": "judge"}},
        "ray": {"enabled": False},
    })


def test_open_instructions_are_scored_by_a_judge_and_summarised_without_a_verdict(tmp_path):
    run_dir, summary = start_run(open_config(tmp_path))
    assert summary["episodes"] == 6 and summary["errors"] == 0
    assert summary["judged"] == 0 and summary["solve_rate"] is None and summary["solved"] == 0
    outcomes = [r.outcome for r in read_steps(run_dir) if r.outcome]
    assert all(o.solved is None and 0.1 <= o.score <= 1.0 for o in outcomes)
    assert summary["mean_score"] == sum(o.score for o in outcomes) / 6
    tasks = [r.task for r in read_steps(run_dir) if r.step == 0]
    assert all(t["answer"] is None and t["grader"] == "none" for t in tasks)
    assert "Explain recursion\n\nto a child" in {t["question"] for t in tasks}


def test_the_cli_shows_a_mean_score_and_no_solve_rate_for_open_instructions(tmp_path):
    config = tmp_path / "open.yaml"
    config.write_text(dump_config(open_config(tmp_path)))
    result = CliRunner().invoke(app, ["run", "--quiet", str(config)])
    assert result.exit_code == 0, result.output
    assert "mean score" in result.output and "solved" not in result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    replayed = CliRunner().invoke(app, ["replay", str(run_dir), "--episode", "0"])
    assert replayed.exit_code == 0 and "score" in replayed.output and "answer" not in replayed.output.split("\n")[1]
