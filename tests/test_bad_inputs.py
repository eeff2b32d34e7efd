"""Bad inputs, one table: each gets exit code 2, a message naming what is wrong, no traceback, and no
run folder left behind. ``ACADEME_BAD_INPUTS_TABLE=path`` also writes the table with the messages
as Markdown (docs/bad-inputs.md is made so)."""

import os
import re
import shlex

import pytest
from typer.testing import CliRunner

from academe.simulation.cli import app
from simulations import SCRIPTED_STUDENT

SCRIPTED = f"models.smollm2={{kind: scripted, path: '{SCRIPTED_STUDENT['path']}'}}"
QUIET = ["--quiet", "--set", "ray.enabled=false"]
EXAMPLE_KEY = "sk-example-0123456789abcdef"  # in the environment of every case: never in a message

# (what is wrong, the command line ({d}: a scratch folder, {run}: a finished run), what the message must say)
CASES = [
    ("config file missing", "run {d}/nope.yaml", "config file '{d}/nope.yaml' does not exist"),
    ("config not UTF-8", "run {d}/binary.yaml", "not a UTF-8 text file"),
    ("config not YAML", "run {d}/broken.yaml", "not valid YAML"),
    ("config a list", "run {d}/list.yaml", "the top level must be a mapping, got list"),
    ("unknown top-level key", "run --set colour=red", "colour: unknown key"),
    ("misspelt key", "run --set run.episdoes=3", "run.episdoes: unknown key"),
    ("episodes zero", "run --set run.episodes=0", "run.episodes"),
    ("--set without =", "run --set run.episodes", "--set 'run.episodes': expected key.path=value"),
    ("unknown protocol", "run --set protocol.name=debat", "unknown protocol 'debat'"),
    ("protocol module missing", "run --set protocol.name=nowhere.mod:p", "nowhere.mod"),
    ("protocol path names no protocol", "run --set protocol.name=academe.protocols.socratic:start",
     "not a Protocol"),
    ("unknown backend kind", "run --set models.smollm2.kind=llamacpp", "unknown backend kind 'llamacpp'"),
    ("model path missing", "run --set models.smollm2.path={d}/none", "model path '{d}/none' does not exist"),
    ("model folder without config.json", "run --set models.smollm2.path={d}", "has no config.json"),
    ("model file not GGUF", "run --set models.smollm2.path={d}/list.yaml", "is not a GGUF file"),
    ("scripted path without colon", "run --set models.oracle.path=oracles", "must look like 'package.module:function'"),
    ("scripted module missing", "run --set models.oracle.path=nope.mod:f", "cannot import 'nope.mod'"),
    ("scripted function missing", "run --set models.oracle.path=academe.protocols.oracles:nobody",
     "has no function 'nobody'"),
    ("agent on an unknown model", "run --set agents.student.model=gpt", "gpt"),
    ("API model without its key variable",
     "run --set 'models.oracle={{kind: openai, path: gpt-4o-mini, options: {{api_key_env: ACADEME_UNSET_KEY}}}}'",
     "models.oracle: options.api_key_env: the environment variable $ACADEME_UNSET_KEY"),
    ("misspelt backend option", "run --set 'models.oracle={{kind: openai, path: m, options: {{bse_url: x}}}}'",
     "options.bse_url: unknown option"),
    ("options for a kind that takes none", "run --set 'models.smollm2.options={{x: 1}}'", "takes no options"),
    ("vllm model where vllm is not installed", "run --set models.smollm2.kind=vllm",
     "vllm is not installed where this model runs"),
    ("adapter model whose host serves no adapters", "run --set 'models.extra={{kind: adapter, path: smollm2}}'",
     "models.extra.path: a model of kind 'adapter' names the model whose engine serves it"),
    ("a model whose engine cannot start", "run --set models.smollm2.kind=agents_for_tests:backend_out_of_memory",
     "the run could not start: model 'smollm2' (agents_for_tests:backend_out_of_memory, smollm2) did not start: "
     "RuntimeError: CUDA out of memory: smollm2 needs 80.00 GiB, 0.00 GiB free (agents on it: student)"),
    ("runner shards without Ray", "run --set run.shards=2", "run.shards: 2 runner shards need Ray"),
    ("NCCL weight sync without GPUs",
     "run --set 'models.smollm2={{kind: vllm, path: smollm2, options: {{weight_sync: nccl}}}}' "
     "--set 'training.smollm2={{role: student}}'", "training.smollm2: model 'smollm2' takes weights over NCCL"),
    ("unknown placement group", "run --set 'models.smollm2.placement={{group: gpus}}'",
     "models.smollm2.placement.group: no placement group 'gpus'"),
    ("config holding an API key", f"run --set agents.student.persona={EXAMPLE_KEY}",
     "agents.student.persona holds the value of $ACADEME_EXAMPLE_API_KEY"),
    ("a role with no agent", "run --set 'agents={{student: {{model: smollm2}}}}'", "role(s) teacher have no agent"),
    ("a role the protocol lacks", "run --set 'agents.judge={{model: oracle}}'", "has no role(s) judge"),
    ("unknown protocol option", "run --set protocol.options.turns=3", "protocol.options.turns: unknown key"),
    ("protocol option out of range", "run --set protocol.options.max_student_turns=0", "max_student_turns"),
    ("file source without a path", "run --set tasks.source=file", "tasks.source 'file' needs tasks.path"),
    ("task file missing", "run --set tasks.source=file --set tasks.path={d}/none.jsonl",
     "task file '{d}/none.jsonl' does not exist"),
    ("task file of the wrong kind", "run --set tasks.source=file --set tasks.path={d}/tasks.csv",
     "use .jsonl or .parquet"),
    ("task file not UTF-8", "run --set tasks.source=file --set tasks.path={d}/binary.jsonl", "line 1: not UTF-8"),
    ("task file with a bad row", "run --set tasks.source=file --set tasks.path={d}/bad-row.jsonl", "line 2"),
    ("task file empty", "run --set tasks.source=file --set tasks.path={d}/empty.jsonl", "holds no tasks"),
    ("offset past the tasks", "run --set tasks.source=file --set tasks.path=sample:gsm8k --set tasks.offset=999",
     "tasks.offset 999 skips all 64 tasks"),
    ("unknown sample", "run --set tasks.source=file --set tasks.path=sample:math", "no such sample"),
    ("HF data set with no network", "run --set tasks.source=hf --set tasks.path=openai/gsm8k",
     "cannot load 'openai/gsm8k'"),
    ("negative temperature", "run --set agents.student.sampling.temperature=-1", "temperature"),
    ("zero new tokens", "run --set agents.student.sampling.max_new_tokens=0", "max_new_tokens"),
    ("training a role its model does not play",
     "run --set 'training.smollm2={{role: teacher}}'", "training.smollm2.role: no agent of role 'teacher' uses model"),
    ("evaluating a role nobody plays", "run --set 'evaluation={{role: judge}}'", "no agent has role 'judge'"),
    ("cluster address where nothing answers", "run --address 127.0.0.1:1", "nothing answers at 127.0.0.1:1"),
    ("replay of a folder that is not a run", "replay {d}", "is not a run folder"),
    ("replay of a folder that does not exist", "replay {d}/none", "is not a run folder"),
    ("replay of a missing episode", "replay {run} --episode 99", "episode 99 is not in"),
    ("replay with an unknown outcome", "replay {run} --outcome maybe", "--outcome 'maybe'"),
    ("resume of a folder that is not a run", "resume {d}", "has no config.yaml: not a run folder"),
    ("fork without a step", "fork {run} --episode 0", "say where to fork"),
    ("fork past an episode's end", "fork {run} --episode 0 --at 40", "cannot fork at step 40"),
    ("fork with an unknown agent", "fork {run} --episode 0 --at 0 --agent student=nobody",
     "no agent or model named 'nobody'"),
    ("fork with an agent of another role", "fork {run} --episode 0 --at 0 --agent student=teacher",
     "agent 'teacher' plays 'teacher'"),
    ("compare with a folder that is not a run", "compare {run} {d}", "is not a run folder"),
    ("import of a missing MathDial file", "import mathdial {d}/none.jsonl", "does not exist"),
    ("import of a file with no readable row", "import mathdial {d}/list.yaml --out {d}/imported",
     "no row could be imported"),
    ("show an unknown protocol", "protocols show debat", "unknown protocol 'debat'"),
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00run: {}")
    (d / "broken.yaml").write_text("run: {name: [unclosed\n")
    (d / "list.yaml").write_text("- a\n- b\n")
    (d / "tasks.csv").write_text("question,answer\n")
    (d / "binary.jsonl").write_bytes(b"\xff\xfe{}\n")
    (d / "bad-row.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n{"q": 1}\n')
    (d / "empty.jsonl").write_text("")
    runs = d / "runs"
    result = CliRunner().invoke(app, ["run", *QUIET, "--set", f"run.out_dir={runs}", "--set", "run.episodes=2",
                                      "--set", SCRIPTED])
    assert result.exit_code == 0, result.output
    (run,) = runs.iterdir()
    return d, run


@pytest.mark.parametrize("what,command,expected", CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_gets_a_clear_error_and_leaves_nothing_behind(scratch, tmp_path, monkeypatch, what, command,
                                                                  expected):
    d, run = scratch
    monkeypatch.chdir(tmp_path)  # a run that wrongly started would make its folder here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # this machine has no network: fail at once, not after retries
    monkeypatch.setenv("ACADEME_EXAMPLE_API_KEY", EXAMPLE_KEY)
    args = [a.format(d=d, run=run) for a in shlex.split(command)]
    if args[0] == "run":
        ray = [] if "--address" in args else QUIET[1:]  # an address is checked where Ray is used
        args += ["--quiet", *ray, "--set", f"run.out_dir={tmp_path / 'runs'}"] + (
            ["--set", SCRIPTED] if "smollm2" not in command else [])
    result = CliRunner().invoke(app, args)
    output = " ".join(result.output.split())
    message = expected.format(d=d, run=run)
    assert result.exit_code == 2 and message in output, output
    assert EXAMPLE_KEY not in output
    assert "Traceback" not in output and (result.exception is None or isinstance(result.exception, SystemExit))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    table = os.environ.get("ACADEME_BAD_INPUTS_TABLE")
    if table:
        shown = re.sub(str(d), "DIR", re.sub(str(run), "RUN", output.removeprefix("error: ")))
        with open(table, "a") as f:
            f.write(f"| {what} | `academe {re.sub(str(d), 'DIR', re.sub(str(run), 'RUN', command.format(d=d, run=run)))}` "
                    f"| {shown.replace('|', '/')} |\n")


def test_the_table_has_forty_cases_or_more():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


def test_commands_that_read_a_damaged_log_name_the_damage(scratch, tmp_path):
    import shutil

    _, run = scratch
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    (damaged / "log" / "live-00099.jsonl").write_text("garbage\n")
    for command in (["fork", damaged, "--episode", "0", "--at", "0"], ["compare", damaged, damaged],
                    ["export", "pairs", damaged], ["replay", damaged, "--verify"]):
        result = CliRunner().invoke(app, [str(a) for a in command])
        output = " ".join(result.output.split())
        assert result.exit_code in (1, 2) and "live-00099.jsonl line 1" in output, (command, output)
        assert result.exception is None or isinstance(result.exception, SystemExit), command
