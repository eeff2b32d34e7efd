"""Experiments: arms x seeds run (and continued) into one folder, with intervals and a budget check."""

import pytest
import yaml
from typer.testing import CliRunner

from academe.simulation.cli import app
from academe.simulation.config import ConfigError, dump_config
from academe.simulation.experiment import Experiment, bootstrap_interval, run_experiment, summarize_experiment
from simulations import config


def write_experiment(tmp_path, **changes) -> str:
    (tmp_path / "base.yaml").write_text(dump_config(config(tmp_path / "unused", episodes=8, concurrency=8)))
    experiment = {"name": "turns", "base": "base.yaml", "seeds": [0, 1, 2], "metric": "solve_rate",
                  "set": ["tasks.steps=2"],
                  "arms": {"one-turn": {"set": ["protocol.options.max_student_turns=1"]},
                           "four-turns": {"set": ["protocol.options.max_student_turns=4"]}}, **changes}
    (tmp_path / "turns.yaml").write_text(yaml.safe_dump(experiment))
    return str(tmp_path / "turns.yaml")


def test_an_experiment_runs_every_arm_and_seed_and_reports_intervals(ray_local, tmp_path):
    path = write_experiment(tmp_path)
    report = run_experiment(path, tmp_path / "out")
    folder = tmp_path / "out" / "turns"
    runs = sorted(p.name.rsplit("-", 2)[0] for p in (folder / "runs").iterdir())
    assert runs == sorted(f"{arm}-s{seed}" for arm in ("one-turn", "four-turns") for seed in (0, 1, 2))
    for arm in ("one-turn", "four-turns"):
        a = report["arms"][arm]
        assert len(a["per_seed"]) == 3 and a["interval"][0] <= a["mean"] <= a["interval"][1]
    # more guided turns solve more (the scripted student guesses until told): the treatment shows
    assert report["arms"]["four-turns"]["mean"] > report["arms"]["one-turn"]["mean"]
    assert report["unequal_budget"] == []  # neither arm trains: 0 steps each
    table = (folder / "results.md").read_text()
    assert "| one-turn |" in table and "| four-turns |" in table
    assert f"academe experiment {path}" in (folder / "report.md").read_text()
    assert "over 6 runs" in (folder / "report.md").read_text()  # their run time, added up
    assert (folder / "results.png").stat().st_size > 0

    # cut short: one run's summary gone, as if killed at its end; the rest is not run again
    finished = {p: (p / "summary.json").stat().st_mtime_ns for p in (folder / "runs").iterdir()}
    cut = sorted(finished)[0]
    (cut / "summary.json").unlink()
    again = run_experiment(path, tmp_path / "out")
    assert again["arms"] == report["arms"]
    assert all((p / "summary.json").stat().st_mtime_ns == t for p, t in finished.items() if p != cut)
    assert (cut / "summary.json").exists()

    # a changed experiment under the same name is refused: its runs would not compare
    changed = write_experiment(tmp_path, set=["tasks.steps=3"])
    with pytest.raises(ConfigError, match="differs from it"):
        run_experiment(changed, tmp_path / "out")

    # one more seed adds that seed's runs and reports over four; the others are not run again
    more = run_experiment(write_experiment(tmp_path, seeds=[0, 1, 2, 3]), tmp_path / "out")
    assert all(len(a["per_seed"]) == 4 for a in more["arms"].values())
    assert all(more["arms"][arm]["per_seed"][s] == report["arms"][arm]["per_seed"][s] for arm in report["arms"]
               for s in (0, 1, 2))
    assert len(list((folder / "runs").iterdir())) == 8
    assert all((p / "summary.json").stat().st_mtime_ns == t for p, t in finished.items() if p != cut)


def test_unequal_budgets_are_reported_by_seed():
    experiment = Experiment(name="x", base="b.yaml", seeds=[0, 1, 2], arms={"a": {}, "b": {}})
    results = [{"arm": arm, "seed": seed, "run": "", "metric": 0.5, "training_steps": steps, "training_tokens": 0}
               for seed in (0, 1, 2) for arm, steps in (("a", 10), ("b", 10 if seed else 12))]
    report = summarize_experiment(experiment, results, "x.yaml")
    assert report["unequal_budget"] == ["seed 0: training_steps a 10, b 12"]


def test_the_bootstrap_interval_brackets_the_mean_and_narrows_with_agreement():
    low, high = bootstrap_interval([0.2, 0.4, 0.6])
    assert 0.2 <= low < 0.4 < high <= 0.6
    assert bootstrap_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_an_experiment_needs_three_seeds_and_two_arms(tmp_path):
    result = CliRunner().invoke(app, ["experiment", write_experiment(tmp_path, seeds=[0, 1])])
    assert result.exit_code == 2 and "seeds" in result.output and "at least 3" in result.output
    result = CliRunner().invoke(app, ["experiment", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_an_arm_with_a_bad_override_fails_before_any_arm_runs(tmp_path):
    path = write_experiment(tmp_path, arms={"one-turn": {"set": ["protocol.options.max_student_turns=1"]},
                                            "four-turns": {"set": ["protocol.options.max_student_turnz=4"]}})
    with pytest.raises(ConfigError, match=r"(?s)turns.yaml: arm 'four-turns', seed 0: .*max_student_turnz: unknown key"):
        run_experiment(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # not even the first arm ran


def test_every_shipped_experiment_loads_with_every_arm_and_seed(tmp_path):
    from pathlib import Path

    from academe.simulation.experiment import arm_config, load_experiment
    from academe.simulation.simulate import plan

    files = sorted((Path(__file__).resolve().parents[1] / "configs" / "experiments").glob("*.yaml"))
    assert files
    for file in files:
        experiment, folder = load_experiment(file)
        for arm in experiment.arms:
            for seed in experiment.seeds:
                plan(arm_config(experiment, folder, arm, seed, tmp_path))


def test_further_held_out_sets_get_their_own_table_and_a_token_budget_may_differ_within_the_tolerance(tmp_path):
    from academe.simulation.experiment import also_of, write_results
    program = {"evaluated": [{"accuracy": 0.2, "also": {"harder": 0.0}}, {"accuracy": 0.5, "also": {"harder": 0.25}}]}
    protocol = {"training": [{"phases": [{"event": "baseline", "also": {"harder": 0.0}},
                                         {"event": "trained", "tokens": 10, "also": {"harder": 0.5}}]}]}
    assert also_of(program) == {"harder": 0.25} and also_of(protocol) == {"harder": 0.5} and also_of({}) == {}

    experiment = Experiment(name="x", base="b.yaml", seeds=[0, 1, 2], arms={"a": {}, "b": {}},
                            equal=["training_tokens"], tolerance=0.05)
    results = [{"arm": arm, "seed": seed, "run": "", "metric": 0.5, "also": {"harder": 0.1 * seed},
                "training_steps": 10, "training_tokens": tokens}
               for seed in (0, 1, 2) for arm, tokens in (("a", 1000), ("b", 1040 if seed < 2 else 1100))]
    report = summarize_experiment(experiment, results, "x.yaml")
    assert report["unequal_budget"] == ["seed 2: training_tokens a 1000, b 1100"]  # 4% passes, 9% does not
    assert report["arms"]["a"]["also"]["harder"]["per_seed"] == {0: 0.0, 1: 0.1, 2: 0.2}
    write_results(tmp_path, experiment, results, report)
    tables = (tmp_path / "results.md").read_text()
    assert "| arm | mean held_out_accuracy |" in tables and "| arm | mean held_out_accuracy (harder) |" in tables
    assert "| a | 0.100 |" in tables  # the harder set's mean for arm a


def test_arms_may_read_their_own_metric_from_another_arms_runs(ray_local, tmp_path):
    from academe.simulation.experiment import metric_of
    summary = {"result": {"rounds": [{"majority": 0.25, "lbt_max": 0.5}, {"majority": 0.5, "lbt_max": 0.75}]}}
    assert metric_of(summary, "result.rounds.-1.lbt_max") == 0.75 and metric_of(summary, "result.rounds.0.majority") == 0.25
    # a path that names nothing is an error naming what is there, not a silent '-' in the table
    with pytest.raises(ConfigError, match=r"result.rounds has no '5' in this run's summary \(it has 2 items\)"):
        metric_of(summary, "result.rounds.5.majority")
    with pytest.raises(ConfigError, match="result.rounds.0 has no 'lbt_mx'.*it has keys majority, lbt_max"):
        metric_of(summary, "result.rounds.0.lbt_mx")
    with pytest.raises(ConfigError, match="names list, not a number"):
        metric_of(summary, "result.rounds")
    assert metric_of({"result": {"rounds": [{"majority": None}]}}, "result.rounds.0.majority") is None  # none recorded

    path = write_experiment(tmp_path, arms={"four-turns": {"set": ["protocol.options.max_student_turns=4"]},
                                            "rate-again": {"same_run_as": "four-turns", "metric": "solve_rate"}},
                            metric="solve_rate")
    report = run_experiment(path, tmp_path / "out")
    assert len(list((tmp_path / "out" / "turns" / "runs").iterdir())) == 3  # one run per seed, read by both arms
    assert report["arms"]["rate-again"]["per_seed"] == report["arms"]["four-turns"]["per_seed"]
    with pytest.raises(ValueError, match="must name an arm before it"):
        Experiment(name="x", base="b.yaml", seeds=[0, 1, 2], arms={"a": {"same_run_as": "b"}, "b": {}})
    with pytest.raises(ValueError, match="no config or set"):
        Experiment(name="x", base="b.yaml", seeds=[0, 1, 2], arms={"a": {}, "b": {"same_run_as": "a", "set": ["x=1"]}})


def test_the_gpu_experiment_files_load(tmp_path):
    """They cannot be planned here (no GPU, no vLLM); their configs must still validate."""
    from pathlib import Path

    from academe.simulation.experiment import arm_config, load_experiment
    from academe.simulation.simulate import held_out_tasks, select_tasks

    files = sorted((Path(__file__).resolve().parents[1] / "configs" / "experiments" / "gpu").glob("*.yaml"))
    assert files
    for file in files:
        experiment, folder = load_experiment(file)
        for arm in (a for a, spec in experiment.arms.items() if spec.same_run_as is None):
            config = arm_config(experiment, folder, arm, experiment.seeds[0], tmp_path)
            assert held_out_tasks(config, select_tasks(config.tasks, None, config.run.seed))


def test_arms_are_compared_with_the_control_seed_by_seed(tmp_path):
    from academe.simulation.experiment import write_results
    experiment = Experiment(name="x", base="b.yaml", seeds=[0, 1, 2], arms={"plain": {}, "better": {}, "same": {}},
                            control="plain")
    values = {"plain": (0.30, 0.50, 0.40), "better": (0.35, 0.60, 0.42), "same": (0.40, 0.45, 0.40)}
    results = [{"arm": arm, "seed": seed, "run": "", "metric": values[arm][seed], "also": {},
                "training_steps": 10, "training_tokens": 0} for seed in (0, 1, 2) for arm in values]
    report = summarize_experiment(experiment, results, "x.yaml")
    better, same = report["differences"]["held_out_accuracy"]["better"], report["differences"]["held_out_accuracy"]["same"]
    assert better["per_seed"] == pytest.approx({0: 0.05, 1: 0.10, 2: 0.02}) and better["shows"] == "higher"
    assert better["interval"][0] == pytest.approx(0.02) and better["mean"] == pytest.approx(0.17 / 3)
    assert same["shows"] == "no difference shown"  # +0.10, -0.05, 0: the interval spans 0
    write_results(tmp_path, experiment, results, report)
    assert "| better | +0.057 | +0.020 - +0.100 | +0.050, +0.100, +0.020 | higher |" in (tmp_path / "results.md").read_text()
    with pytest.raises(ValueError, match="control 'nobody' is not an arm"):
        Experiment(name="x", base="b.yaml", seeds=[0, 1, 2], arms={"a": {}, "b": {}}, control="nobody")


def test_a_new_control_reports_the_runs_again_without_running_them(ray_local, tmp_path):
    path = write_experiment(tmp_path)
    run_experiment(path, tmp_path / "out")
    runs = sorted((tmp_path / "out" / "turns" / "runs").iterdir())
    again = run_experiment(write_experiment(tmp_path, control="one-turn"), tmp_path / "out")
    assert sorted((tmp_path / "out" / "turns" / "runs").iterdir()) == runs
    assert again["differences"]["solve_rate"]["four-turns"]["shows"] == "higher"
    # another metric only reports the same runs differently; one that names nothing says so
    with pytest.raises(ConfigError, match="metric 'result.rounds.0.majority': this run has no result"):
        run_experiment(write_experiment(tmp_path, metric="result.rounds.0.majority"), tmp_path / "out")
    assert sorted((tmp_path / "out" / "turns" / "runs").iterdir()) == runs
