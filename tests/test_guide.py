"""The guide's example (docs/writing-protocols.md, examples/debate): a user's protocol and program in
their own package, loaded by module path; the errors the guide shows are the ones academe gives."""

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from academe.protocols import Phase, Protocol, ProtocolError
from academe.simulation.cli import app
from academe.simulation.config import load_config
from academe.simulation.log import read_messages

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "debate"
GUIDE = (Path(__file__).resolve().parents[1] / "docs" / "writing-protocols.md").read_text()


@pytest.fixture
def in_example(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(EXAMPLE)
    return ["--quiet", "--set", "ray.enabled=false", "--set", f"run.out_dir={tmp_path}"]


def run(*args):
    """Exit code and output, table borders and line wraps removed."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(re.sub(r"[\u2500-\u257f]", " ", result.output).split())


def test_the_debate_runs_replays_and_resumes_from_the_users_package(in_example, tmp_path):
    code, out = run("run", "debate.yaml", *in_example)
    assert code == 0 and "episodes 8" in out and "mean for_won" in out
    (run_dir,) = tmp_path.iterdir()
    frame = read_messages(run_dir).to_pandas()
    debaters = frame[frame.role == "debater"]
    assert set(zip(debaters.seat, debaters.agent)) == {(0, "alice"), (1, "bob")} and set(frame.protocol) == {"debate"}
    code, out = run("replay", str(run_dir), "--episode", "0")
    assert code == 0 and "alice" in out and "Winner:" in out
    code, out = run("resume", str(run_dir), "--quiet")
    assert code == 0 and "has finished; nothing to resume" in out
    (run_dir / "summary.json").unlink()  # as if it had been killed at its very end
    code, out = run("resume", str(run_dir), "--quiet")
    assert code == 0 and "episodes 8" in out and "messages 0" in out


def test_the_errors_the_guide_shows_are_the_errors_academe_gives(in_example):
    from my_protocols import debate as d
    base = dict(name="debate", roles=("debater", "judge"), state=d.Debate, options=d.DebateOptions, start=d.start,
                first=("argue",))
    judge = Phase("judge", d.judged, then=("<end>",))
    for phases in ({"argue": Phase("debater", d.argued, then=("argue", "judgement")), "judge": judge},
                   {"argue": Phase("debater", d.argued, then=("argue",)), "judge": judge},
                   {"argue": Phase("debater", d.argued, then=("argue", "judge")),
                    "judge": Phase("jury", d.judged, then=("<end>",))}):
        with pytest.raises(ProtocolError) as raised:
            Protocol(**base, phases=phases)
        assert f"`{raised.value}`" in GUIDE
    code, out = run("run", "debate.yaml", *in_example, "--set", "agents.debater=[{name: alice, model: scripted_debater}]")
    assert code == 1 and "protocol 'debate': ask to seat 1 of role 'debater', which has 1 agent(s)" in out
    assert "every episode ended in an error" in out
    for change, said in [("agents={debater: [{model: scripted_debater}, {model: scripted_debater}]}",
                          "protocol 'debate': role(s) judge have no agent; bind each of debater, judge to an agent"),
                         ("protocol.options.round=3", "protocol.options.round: unknown key"),
                         ("protocol.name=my_protocols.debate:debat",
                          "protocol 'my_protocols.debate:debat': my_protocols.debate.debat is nothing, not a Protocol")]:
        code, out = run("run", "debate.yaml", *in_example, "--set", change)
        assert code == 2 and said in out and said.split(" (")[0] in GUIDE


def test_the_league_trains_the_debaters_between_rounds(in_example, tiny_model, tmp_path):
    config = load_config(EXAMPLE / "league.yaml", ["ray.enabled=false", f"run.out_dir={tmp_path}",
                                                   f"models.smollm2.path={tiny_model}", "program.options.rounds=1",
                                                   "training.smollm2.settings.steps=2"])
    from academe.simulation.simulate import start_run
    run_dir, summary = start_run(config)
    assert summary["program"] == "league" and len(summary["result"]["for_won"]) == 1
    ((trained),) = summary["trained"]
    assert trained["role"] == "debater" and trained["version"] == 1 and trained["examples"] > 0
