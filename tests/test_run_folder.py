"""A run folder has one writer, runs the config it started with, and keeps its summary once finished."""

import json

import pytest

from academe.simulation.run_folder import locked
from simulations import SCRIPTED_STUDENT, academe


@pytest.fixture
def run_dir(tmp_path):
    code, out = academe("run", "--quiet", "--set", f"run.out_dir={tmp_path}", "--set", "run.episodes=4",
                        "--set", "ray.enabled=false",
                        "--set", f"models.smollm2={{kind: scripted, path: '{SCRIPTED_STUDENT['path']}'}}")
    assert code == 0, out
    (found,) = tmp_path.iterdir()
    return found


def test_resuming_a_finished_run_keeps_its_summary(run_dir):
    before = (run_dir / "summary.json").read_text()
    code, out = academe("resume", run_dir, "--quiet")
    assert code == 0 and "has finished; nothing to resume" in out
    assert (run_dir / "summary.json").read_text() == before


def test_a_second_writer_of_a_run_folder_is_refused(run_dir):
    (run_dir / "summary.json").unlink()  # as if the run had been killed before its end
    with locked(run_dir):
        code, out = academe("resume", run_dir, "--quiet")
    assert code == 2 and f"{run_dir} is being written by academe process" in out
    code, out = academe("resume", run_dir, "--quiet")  # the lock went with its holder
    assert code == 0, out


@pytest.mark.parametrize("edit,allowed", [(("seed: 0", "seed: 1"), False), (("steps: 1", "steps: 2"), False),
                                          (("concurrency: 24", "concurrency: 2"), True)])
def test_a_config_edited_since_the_run_started_is_refused(run_dir, edit, allowed):
    (run_dir / "summary.json").unlink()
    config = run_dir / "config.yaml"
    assert edit[0] in config.read_text()
    config.write_text(config.read_text().replace(*edit))
    code, out = academe("resume", run_dir, "--quiet")
    if allowed:
        assert code == 0, out
    else:
        field = {"seed: 0": "run.seed: 0 -> 1", "steps: 1": "tasks.steps: 1 -> 2"}[edit[0]]
        assert code == 2 and "was edited since the run started" in out and field in out
        assert "then: academe resume" not in out  # resuming again would not help


def test_a_run_started_before_academe_gained_a_config_field_still_resumes(run_dir):
    (run_dir / "summary.json").unlink()
    started = json.loads((run_dir / "started.json").read_text())
    del started["config"]["tasks"]["offset"]  # as written by a version without tasks.offset
    (run_dir / "started.json").write_text(json.dumps(started))
    code, out = academe("resume", run_dir, "--quiet")
    assert code == 0, out


def test_a_run_whose_every_episode_failed_exits_non_zero(tmp_path):
    code, out = academe("run", "--quiet", "--set", f"run.out_dir={tmp_path}", "--set", "run.episodes=3",
                        "--set", "ray.enabled=false",
                        "--set", "models.smollm2={kind: scripted, path: 'academe.protocols.mathdial:human'}")
    assert code == 1 and "every episode ended in an error" in out
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "summary.json").read_text())["errors"] == 3


@pytest.mark.parametrize("setting,message", [
    ("models.oracle.path=nope.mod:fn", "models.oracle.path: scripted agent path 'nope.mod:fn': cannot import 'nope.mod'"),
    ("models.oracle.path=academe.protocols.oracles:nothing", "academe.protocols.oracles has no function 'nothing'"),
    ("models.smollm2.path={folder}", "models.smollm2.path: model folder '{folder}' has no config.json"),
    ("models.smollm2.path={folder}/missing.gguf", "models.smollm2.path: model path '{folder}/missing.gguf' does not exist"),
])
def test_models_that_cannot_load_are_found_before_a_run_folder_is_made(tmp_path, setting, message):
    out = tmp_path / "runs"
    code, text = academe("run", "--quiet", "--set", f"run.out_dir={out}", "--set", "ray.enabled=false",
                         "--set", setting.format(folder=tmp_path))
    assert code == 2 and message.format(folder=tmp_path) in text
    assert not out.exists()


def test_a_run_that_cannot_be_placed_leaves_no_run_folder(tmp_path):
    code, text = academe("run", "--quiet", "--set", f"run.out_dir={tmp_path}", "--set", "models.smollm2.num_cpus=64",
                         "--set", "ray.num_cpus=2")
    assert code == 2 and "the run could not start: the models and trainers ask for 64 CPUs" in text
    assert not any(tmp_path.iterdir())


def test_a_log_with_a_garbage_line_is_named_not_half_read(run_dir):
    (run_dir / "summary.json").unlink()
    live = run_dir / "log" / "live-00003.jsonl"
    record = next((run_dir / "log").glob("steps-*.parquet"))
    from academe.simulation.log import read_steps
    first = next(read_steps(run_dir)).model_dump_json()
    live.write_text(first + "\n" + "garbage\n" + first + "\n")
    code, out = academe("resume", run_dir, "--quiet")
    assert code == 2 and f"{live} line 2 is not a step record" in out and "The log is damaged" in out
    assert record.exists() and live.read_text().count("\n") == 3  # nothing rewritten


@pytest.mark.parametrize("address,message", [("127.0.0.1:1", "nothing answers at 127.0.0.1:1"),
                                             ("ray://127.0.0.1:1", "nothing answers at 127.0.0.1:1"),
                                             ("headnode", "write host:port")])
def test_a_cluster_address_where_nothing_answers_fails_at_once(tmp_path, address, message):
    code, text = academe("run", "--quiet", "--set", f"run.out_dir={tmp_path}", "--address", address)
    assert code == 2 and f"ray.address {address!r}" in text and message in text
    assert not any(tmp_path.iterdir())
