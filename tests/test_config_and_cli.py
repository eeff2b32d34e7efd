"""Configs and the CLI: what a user types, and the errors a user sees."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from academe.simulation.cli import app
from academe.simulation.config import ConfigError, load_config
from simulations import SCRIPTED_STUDENT

cli = CliRunner()


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_default_config_loads_and_overrides_apply():
    cfg = load_config(None, ["run.episodes=5", "agents.student.sampling.temperature=0.7"])
    assert cfg.run.episodes == 5 and cfg.agents["student"].sampling.temperature == 0.7
    assert cfg.models["smollm2"].path == "smollm2" and cfg.protocol.name == "socratic"


@pytest.mark.parametrize("text,expected", [
    ("run: {episodes: 3, episdoes: 4}\nmodels: {}\nagents: {}", r"run.episdoes: unknown key"),
    ("run: {episodes: -1}\nmodels: {}\nagents: {}", r"run.episodes: Input should be greater than or equal to 1 \(got -1\)"),
    ("models: {m: {kind: llamacpp}}\nagents: {}", r"models.m.kind: unknown backend kind 'llamacpp'; use one of transformers, scripted"),
    ("models: {m: {kind: scripted, path: a:b}}\nagents: {s: {role: student, model: nope}}",
     r"agents.s.model is 'nope', but models defines only: m"),
    ("models: {m: {}}\nagents: {s: {role: student, model: m, sampling: {top_p: 2}}}", r"agents.s.sampling.top_p"),
    ("run: [1, 2\n", r"not valid YAML"),
    ("- a\n- b\n", r"top level must be a mapping"),
    ("tasks: {source: file}\nmodels: {}\nagents: {}", r"tasks.source 'file' needs tasks.path"),
])
def test_bad_configs_name_the_field_and_the_fix(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_missing_config_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(None, ["episodes"])


def test_cli_rejects_unknown_protocol_and_unbound_role(tmp_path):
    result = cli.invoke(app, ["run", "--set", "protocol.name=debate"])
    assert result.exit_code == 2 and "unknown protocol 'debate'; known: answer, compare, make-problem, socratic, solve-and-verify, teach-and-exam, write-instruction" in result.output
    cfg = yaml.safe_load(open(load_config.__globals__["DEFAULT_CONFIG"]))
    del cfg["agents"]["teacher"]
    result = cli.invoke(app, ["run", str(write(tmp_path, yaml.safe_dump(cfg)))])
    assert result.exit_code == 2 and "role(s) teacher have no agent" in result.output


def test_cli_protocols_lists_and_draws(tmp_path):
    listing = cli.invoke(app, ["protocols"])
    assert listing.exit_code == 0 and "socratic" in listing.output and "teacher, student" in listing.output
    picture = tmp_path / "graph.png"
    shown = cli.invoke(app, ["protocols", "show", "socratic", "--picture", str(picture)])
    assert shown.exit_code == 0 and "attempt" in shown.output and "guide" in shown.output
    assert picture.read_bytes()[:4] == b"\x89PNG"


def test_cli_run_then_replay_in_one_process_without_ray(tmp_path):
    overrides = ["--set", f"run.out_dir={tmp_path}", "--set", "run.episodes=6", "--set", "ray.enabled=false",
                 "--set", f"models.smollm2={{kind: scripted, path: '{SCRIPTED_STUDENT['path']}'}}"]
    result = cli.invoke(app, ["run", "--quiet", *overrides])
    assert result.exit_code == 0, result.output
    assert "success@k" in result.output and "episodes" in result.output
    (run_dir,) = tmp_path.iterdir()
    replayed = cli.invoke(app, ["replay", str(run_dir), "--episode", "1"])
    assert replayed.exit_code == 0 and "episode 1" in replayed.output and "teacher (focus)" in replayed.output
    assert "scripted:socratic_teacher v0" in replayed.output
    missing = cli.invoke(app, ["replay", str(run_dir), "--episode", "99"])
    assert missing.exit_code == 2 and "episode 99 is not in" in missing.output


def test_missing_task_file_fails_before_anything_starts(tmp_path):
    result = cli.invoke(app, ["run", "--quiet", "--set", "tasks.source=file", "--set", f"tasks.path={tmp_path}/x.jsonl",
                              "--set", "ray.enabled=false", "--set", f"run.out_dir={tmp_path}/runs"])
    assert result.exit_code == 2 and "x.jsonl' does not exist" in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name,runs", [("socratic-llm-teacher-gsm8k.yaml", "socratic"), ("learn-socratic.yaml", "socratic"),
                                       ("socratic-zero.yaml", "socratic-zero"),
                                       ("socratic-zero-baseline.yaml", "fine-tuning"), ("llm2llm.yaml", "llm2llm"),
                                       ("llm2llm-baseline.yaml", "fine-tuning"), ("lion.yaml", "lion"),
                                       ("lbt.yaml", "lbt"), ("mathdial-tutoring.yaml", "socratic")])
def test_example_configs_are_valid_from_anywhere(name, runs, monkeypatch, tmp_path):
    import shutil
    from pathlib import Path

    from academe.simulation.simulate import plan
    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "configs" / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)  # a user's own folder: nothing of this checkout's layout around it
    checked = plan(load_config(tmp_path / name))
    assert checked.tasks and checked.name == runs


def test_cli_lists_and_draws_programs_too(tmp_path):
    listing = cli.invoke(app, ["protocols"])
    assert "program  socratic-zero" in listing.output and "solver, teacher, generator" in listing.output
    picture = tmp_path / "program.png"
    shown = cli.invoke(app, ["protocols", "show", "socratic-zero", "--picture", str(picture)])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "attempted" in text and "solve-and-verify, make-problem" in text
    assert "solver (dpo), generator (sft)" in text and picture.read_bytes()[:4] == b"\x89PNG"
    by_path = cli.invoke(app, ["protocols", "show", "panel_protocol:panel", "--picture", str(tmp_path / "p.png")])
    assert by_path.exit_code == 0 and "protocol panel" in by_path.output


def test_a_run_folder_of_an_older_log_format_is_refused_with_a_message(tmp_path):
    run_dir = tmp_path / "old-run"
    (run_dir / "log").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("models: {}\nagents: {}\n")
    (run_dir / "log" / "live-00000.jsonl").write_text('{"run": "old", "episode": 0, "step": 0, "turns": []}\n')
    replayed = cli.invoke(app, ["replay", str(run_dir)])
    assert replayed.exit_code == 2
    assert "holds a log in record format 1; this academe reads formats 2 and 3" in " ".join(replayed.output.split())


def test_program_configs_are_checked_before_anything_starts(tmp_path):
    base = {"program": {"name": "socratic-zero"}, "tasks": {"source": "generated", "limit": 4},
            "models": {"a": {"kind": "scripted", "path": "academe.protocols.oracles:guessing_student"},
                       "t": {"kind": "transformers", "path": "smollm2"}, "g": {"kind": "transformers", "path": "smollm2"}},
            "agents": {"solver": {"model": "t"}, "teacher": {"model": "a"}, "generator": {"model": "g"}},
            "training": {"t": {}, "g": {}}}
    from academe.simulation.config import parse_config
    from academe.simulation.simulate import plan
    assert plan(parse_config(base)).program.name == "socratic-zero"
    from academe.simulation.config import dump_config
    resolved = yaml.safe_load(dump_config(parse_config(base)))  # what a run folder keeps, and resume reads
    assert plan(parse_config(resolved)).program.name == "socratic-zero"
    cases = [
        ({"protocol": {"name": "socratic"}}, "give a protocol or a program, not both"),
        ({"program": {"name": "socratic"}}, "unknown program 'socratic'.*'socratic' is a protocol: use 'protocol:'"),
        ({"training": {"t": {}}}, "trains role 'generator', played on model 'g': add training.g"),
        ({"training": {"t": {}, "g": {}, "a": {}}}, "model 'a' is 'scripted' and cannot be trained"),
        ({"agents": {"solver": {"model": "t"}, "teacher": {"model": "a"}}}, "role\\(s\\) generator have no agent"),
        ({"tasks": {"source": "generated"}}, "tasks.limit: say how many generated tasks"),
        ({"program": {"name": "socratic-zero", "options": {"k": 1}}}, "program.options.k: Input should be greater"),
        ({"training": {"t": {"every_episodes": 3}, "g": {}}}, "training.t: every_episodes set a protocol run's schedule"),
        ({"evaluation": {"role": "solver"}}, "evaluation.role: program 'socratic-zero' says itself which role"),
        ({"tasks": {"source": "generated", "limit": 4, "grader": "bogus"}}, "unknown grader 'bogus'"),
        ({"agents": {"solver": {"model": "t"}, "teacher": {"model": "a"}, "generator": {"model": "t"}},
          "training": {"t": {}}}, "roles solver and generator both play model 't'"),
    ]
    for change, message in cases:
        with pytest.raises(ConfigError, match=message):
            plan(parse_config({**base, **change}))


def test_socratic_zero_and_its_baseline_differ_only_in_the_treatment():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "configs"
    zero, base = load_config(root / "socratic-zero.yaml"), load_config(root / "socratic-zero-baseline.yaml")
    assert zero.tasks == base.tasks and zero.evaluation == base.evaluation and zero.run.seed == base.run.seed
    assert zero.agents["solver"] == base.agents["solver"]
    same = {"mode", "lora_r", "lora_alpha", "batch_size", "steps", "max_seq_len", "seed"}  # the same optimizer steps
    assert zero.training["solver"].settings.model_dump(include=same) == base.training["solver"].settings.model_dump(
        include=same)
    assert zero.program.options["rounds"] == base.program.options["rounds"]


def test_the_gsm8k_config_runs_from_a_folder_outside_the_project(tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "configs" / "socratic-llm-teacher-gsm8k.yaml", tmp_path / "gsm8k.yaml")
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, ["run", "gsm8k.yaml", "--quiet", "--set", "run.episodes=2", "--set", "ray.enabled=false",
                              "--set", f"models.smollm2={{kind: scripted, path: '{SCRIPTED_STUDENT['path']}'}}"])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    replayed = cli.invoke(app, ["replay", str(run_dir), "--json"])
    first = json.loads(replayed.output.splitlines()[0])
    assert first["task"]["question"].startswith("Janet")  # GSM8K's first test problem, from the shipped sample
