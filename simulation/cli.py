"""The ``academe`` command line: run, resume, replay, protocols."""

from __future__ import annotations

import errno
import json
import shutil
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Column, Table

from academe.agents.redaction import redact
from academe.protocols import PROGRAMS, PROTOCOLS, ProtocolError, get_program, get_protocol
from academe.protocols.program import Program
from academe.simulation.actors import ModelStartError
from academe.simulation.config import ConfigError, load_config
from academe.simulation.log import LogDamaged, LogFormatError
from academe.simulation.program_runner import ProgramDiverged
from academe.simulation.run_folder import RunInUse
from academe.simulation.runner import Progress

app = typer.Typer(pretty_exceptions_show_locals=False, add_completion=False, no_args_is_help=True,
                  help="academe: LLM agents that teach, question and learn from each other, on Ray.")
protocols_app = typer.Typer(help="List interaction protocols and round-level programs, or show one.",
                            invoke_without_command=True)
app.add_typer(protocols_app, name="protocols")
export_app = typer.Typer(help="Write a run out: an HTML page, or a fork's turns beside its parent's.",
                         no_args_is_help=True)
app.add_typer(export_app, name="export")
import_app = typer.Typer(help="Bring outside dialogues in as run folders.", no_args_is_help=True)
app.add_typer(import_app, name="import")
console = Console()
err_console = Console(stderr=True)


def progress_line(p: Progress) -> Table:
    table = Table.grid(padding=(0, 2))
    rate = p.messages / p.elapsed if p.elapsed else 0.0
    solved = f"{p.solved}/{p.done}" if p.done else "-"
    table.add_row(f"episodes [bold]{p.done}/{p.total}[/]", f"messages {p.messages} ({rate:.1f}/s)",
                  f"tokens {p.completion_tokens}", f"solved {solved}",
                  f"[red]errors {p.errors}[/]" if p.errors else "", f"{p.elapsed:.0f}s")
    if p.status:
        table.add_row(f"[yellow]{escape(p.status)}[/]")
    return table


def summary_table(summary: dict, run_dir: Path) -> Table:
    table = Table(title=f"run {run_dir.name}", show_header=False)
    if "program" in summary:
        program_rows(table, summary)
    else:
        episode_rows(table, summary)
    rate = f" ({summary['messages_per_s']}/s)" if "messages_per_s" in summary else ""
    table.add_row("messages", f"{summary['messages_this_session']}{rate}")
    table.add_row("completion tokens", str(summary["completion_tokens_this_session"]))
    table.add_row("wall time", f"{summary['wall_s']} s")
    for training in summary.get("training", []):
        trained = [p for p in training["phases"] if p["event"] == "trained"]
        table.add_row(f"trained {training['model']}", f"versions {', '.join(map(str, training['versions'])) or 'none'}; "
                      + "; ".join(f"v{p['version']}: loss {p['loss_first']:.2f}->{p['loss_last']:.2f} "
                                  f"({p['examples']} examples, {p['seconds']:.0f} s)" for p in trained))
        if training["accuracy"]:
            table.add_row("held-out accuracy", "  ".join(f"v{v}: {a:.1%}" for v, a in training["accuracy"]))
        for note in training.get("checkpoints_set_aside", []):
            table.add_row("[yellow]checkpoint set aside[/]", escape(note))
        for p in training["phases"]:
            if p["event"] in ("skipped", "failed"):
                table.add_row(f"[yellow]{p['event']}[/]", escape(p["reason"]))
            if p.get("publish_failed"):
                table.add_row("[red]publication failed[/]", escape(str(p["publish_failed"])))
    if "training_s" in summary:
        table.add_row("time in training phases / simulating",
                      f"{summary['training_s']} s / {summary['simulating_s']} s")
    if summary.get("learning_curve"):
        table.add_row("learning curve", summary["learning_curve"])
    table.add_row("run folder", str(run_dir))
    return table


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


def episode_rows(table: Table, summary: dict) -> None:
    table.add_row("episodes", str(summary["episodes"]))
    if summary["judged"]:
        table.add_row("solved", f"{summary['solved']} of {summary['judged']} ({percent(summary['solve_rate'])})")
    if summary["mean_score"] is not None:
        table.add_row("mean score", f"{summary['mean_score']:.3f}")
    for name, curve in summary["at_k"].items():
        table.add_row(name, "  ".join(f"k={k}: {v:.1%}" for k, v in curve.items()))
    for name, value in summary["metrics"].items():
        table.add_row(f"mean {name}", f"{value:.2f}")
    if summary["errors"]:
        table.add_row("[red]episodes with errors[/]", f"{summary['errors']}: {escape(summary['first_error'])}")


def program_rows(table: Table, summary: dict) -> None:
    table.add_row("program", f"{summary['program']}: {summary['rounds']} round(s), {summary['decisions']} decisions")
    for name, e in summary["episodes"].items():
        errors = f", [red]{e['errors']} with errors[/]" if e["errors"] else ""
        score = f", mean score {e['mean_score']:.3f}" if e["mean_score"] is not None else ""
        table.add_row(f"episodes of {name}", f"{e['episodes']}{score}{errors}")
    for t in summary["trained"]:
        what = (f"[yellow]skipped[/]: {escape(t['skipped'])}" if t["skipped"] else
                f"v{t['version']}: loss {t['loss_first']:.3f}->{t['loss_last']:.3f}, {t['examples']} examples, "
                f"{t['steps']} steps, {t['seconds']:.0f} s")
        table.add_row(f"round {t['round']}: trained {t['role']} ({t['model']})", what)
    for e in summary["evaluated"]:
        table.add_row(f"round {e['round']}: held-out {e['role']}", f"v{e['version']}: {percent(e['accuracy'])} "
                                                                   f"of {e['tasks']}")
    for key, value in summary["result"].items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, entry in enumerate(value):
                table.add_row(f"{key} {i}", escape(", ".join(f"{k}={shown(v)}" for k, v in entry.items())))
        else:
            table.add_row(key, escape(shown(value)))


def shown(value) -> str:
    """A summary value, short: shares and weights to 3 places, long lists by count and mean."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list) and len(value) > 6 and all(isinstance(v, (int, float)) for v in value):
        return f"{len(value)} values, mean {sum(value) / len(value):.3g}"
    if isinstance(value, list):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    return str(value)


def _live_run(action, quiet: bool):
    if quiet:
        return action(None)
    with Live(progress_line(Progress(total=0)), console=console, refresh_per_second=4) as live:
        return action(lambda p: live.update(progress_line(p)))


def _guarded(action, run_dir: Path, fresh: bool = False):
    """Run ``action``; if a file cannot be written or read, say so and how to go on. A new run
    (``fresh``) that could not start at all leaves no run folder behind."""
    try:
        return action()
    except KeyboardInterrupt:
        _interrupted(f"everything logged is kept in {run_dir}; to go on: academe resume {run_dir}")
    except (OSError, ConfigError, ModelStartError) as exc:
        if isinstance(exc, ConfigError) and not fresh:
            raise
        if fresh and not any((run_dir / "log").glob("*")) and not (run_dir / "program.jsonl").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing was logged: no half run folder
            _fail(f"the run could not start: {exc}")
        disk = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
        _fail(f"the run stopped: {exc}. Everything logged before this is kept in {run_dir}; "
              f"{'free disk space' if disk else 'fix the cause'}, then: academe resume {run_dir}")


def _exit_if_all_failed(summary: dict) -> None:
    """A run none of whose episodes got through is a failure, whatever was logged."""
    counts = [summary] if "program" not in summary else list(summary["episodes"].values())
    episodes, errors = sum(c["episodes"] for c in counts), sum(c["errors"] for c in counts)
    if episodes and errors == episodes:
        console.print(f"[red]every episode ended in an error[/] (the first: {escape(str(summary.get('first_error')))}); "
                      "replay them with: academe replay RUN --errors", soft_wrap=True)
        raise typer.Exit(1)


def _interrupted(how_to_go_on: str) -> None:
    console.print(f"[yellow]interrupted:[/] {escape(how_to_go_on)}", soft_wrap=True)
    raise typer.Exit(130)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {escape(redact(message))}", soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="YAML config; default: the built-in Socratic demo"),
    set_: List[str] = typer.Option([], "--set", help="override a config value: key.path=value (repeatable)"),
    address: Optional[str] = typer.Option(None, help="Ray cluster to join ('auto', ray://host:port)"),
    quiet: bool = typer.Option(False, help="no live progress display"),
):
    """Run a simulation and print its summary."""
    from academe.simulation.simulate import execute, plan, prepare_run_dir

    try:
        overrides = list(set_) + ([f"ray.address={address}"] if address else [])
        cfg = load_config(config, overrides)
        checked = plan(cfg)
    except ConfigError as exc:
        _fail(str(exc))
    run_dir = prepare_run_dir(cfg)
    agents = ", ".join(cfg.agent_specs())
    if checked.program is not None:
        console.print(f"running program [bold]{checked.name}[/] on {len(checked.tasks)} seed tasks with agents "
                      f"{agents} into {run_dir}")
    else:
        console.print(f"running [bold]{cfg.run.episodes}[/] episodes of [bold]{checked.name}[/] "
                      f"({cfg.run.concurrency} at once) with agents {agents} into {run_dir}")
    summary = _guarded(lambda: _live_run(lambda on_progress: execute(cfg, checked, run_dir, on_progress), quiet),
                       run_dir, fresh=True)
    console.print(summary_table(summary, run_dir))
    console.print(f"replay a dialogue: academe replay {run_dir} --episode 0")
    _exit_if_all_failed(summary)


@app.command()
def experiment(
    path: Path = typer.Argument(..., help="an experiment file: base config, arms, seeds, metric, equal budget"),
    out: Path = typer.Option(Path("experiments"), help="folder that receives the experiment's folder"),
):
    """Run every arm x seed of an experiment (continuing one that was cut short), then write its
    results table, plot and report."""
    from academe.simulation.experiment import run_experiment

    def announce(arm: str, seed: int, state: str) -> None:
        console.print(f"{arm} seed {seed}: {state}")

    try:
        report = run_experiment(path, out, announce)
    except ConfigError as exc:
        _fail(str(exc))
    except (OSError, ModelStartError, ProgramDiverged) as exc:
        _fail(f"the experiment stopped: {exc}. Finished runs are kept; fix the cause, then run "
              f"academe experiment {path} again: it goes on where it stopped")
    except KeyboardInterrupt:
        _interrupted(f"finished runs are kept; academe experiment {path} goes on where it stopped")
    folder = out / report["experiment"]
    console.print((folder / "results.md").read_text(), soft_wrap=True)
    if report["unequal_budget"]:
        console.print(f"[red]budget not equal across arms:[/] {'; '.join(report['unequal_budget'])}", soft_wrap=True)
    console.print(f"report: {folder / 'report.md'}; plot: {folder / 'results.png'}")


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="the run folder of a run that was interrupted"),
           quiet: bool = typer.Option(False, help="no live progress display")):
    """Continue an interrupted run: finished episodes are kept, the others go on from their last step."""
    from academe.simulation.simulate import resume_run

    try:
        summary = _guarded(lambda: _live_run(lambda on_progress: resume_run(run_dir, on_progress), quiet), run_dir)
    except (FileNotFoundError, ConfigError, LogFormatError, LogDamaged, ProgramDiverged, RunInUse) as exc:
        _fail(f"{exc}" + (f". The log is damaged: academe replay {run_dir} shows what is whole; to go on, "
                          "start the run again" if isinstance(exc, LogDamaged) else ""))
    if summary.get("already_finished"):
        console.print(f"{run_dir} has finished; nothing to resume (its summary: {run_dir / 'summary.json'})")
        return
    console.print(summary_table(summary, run_dir))
    _exit_if_all_failed(summary)


@app.command()
def replay(run_dir: Path = typer.Argument(..., help="a run folder"),
           episode: List[int] = typer.Option([], help="episode id (repeatable); default: all"),
           round_: Optional[int] = typer.Option(None, "--round", help="episodes of this program round"),
           outcome: Optional[str] = typer.Option(None, help="solved, unsolved, ungraded, error or unfinished"),
           errors: bool = typer.Option(False, "--errors", help="only episodes with an error"),
           role: Optional[str] = typer.Option(None, help="only turns of this role"),
           agent: Optional[str] = typer.Option(None, help="only turns of this agent"),
           version: Optional[int] = typer.Option(None, help="only turns written by this model version"),
           limit: Optional[int] = typer.Option(None, help="show at most this many episodes"),
           offset: int = typer.Option(0, help="skip this many matching episodes first"),
           as_json: bool = typer.Option(False, "--json", help="one JSON object per episode, for machines"),
           page: bool = typer.Option(True, help="page long output in a terminal"),
           verify: bool = typer.Option(False, "--verify", help="re-execute the protocol's step functions on the "
                                       "logged replies and report the first divergence per episode")):
    """Show logged dialogues as they happened: who said what, moves, model versions, outcomes."""
    from academe.simulation.replay import Filters, load_views, print_dialogues, write_json

    if verify:
        return _verify(run_dir)
    if outcome not in (None, "solved", "unsolved", "ungraded", "error", "unfinished"):
        _fail(f"--outcome {outcome!r}: use solved, unsolved, ungraded, error or unfinished")
    filters = Filters(episodes=tuple(episode), round=round_, outcome=outcome, errors=errors, role=role,
                      agent=agent, version=version)
    damaged: list[str] = []
    try:
        views = load_views(run_dir, filters, damaged)
    except (FileNotFoundError, KeyError, LogFormatError, LogDamaged) as exc:
        _fail(str(exc).strip("'\""))
    shown = views[offset: None if limit is None else offset + limit]
    if as_json:
        write_json(shown, sys.stdout)
    elif page and console.is_terminal and len(shown) > 3:
        with console.pager(styles=True):
            print_dialogues(shown, console)
    else:
        print_dialogues(shown, console)
    if not views:
        err_console.print("no episode matches these filters")
    for note in damaged:
        err_console.print(f"[yellow]damaged log, left out:[/] {escape(note)}", soft_wrap=True)
    if damaged:
        raise typer.Exit(1)


@app.command()
def fork(run_dir: Path = typer.Argument(..., help="the parent run folder"),
         episode: List[int] = typer.Option([], help="episode to fork (repeatable)"),
         unsolved: bool = typer.Option(False, "--unsolved", help="fork every episode the parent did not solve"),
         all_: bool = typer.Option(False, "--all", help="fork every episode"),
         at: Optional[int] = typer.Option(None, help="keep the logged steps up to this one; the rest runs live"),
         before: Optional[str] = typer.Option(None, help="instead of --at: fork before every turn of this role "
                                              "(one forked episode per turn)"),
         agent: List[str] = typer.Option([], help="ROLE=WHAT or AGENT=WHAT: another agent, a model, or "
                                         "model@vN (a checkpoint of the parent run); repeatable"),
         with_: Optional[Path] = typer.Option(None, "--with", help="YAML with extra models and agents to fork with"),
         stop_after: Optional[int] = typer.Option(None, help="let each forked episode take only this many steps"),
         name: Optional[str] = typer.Option(None, help="run name (default: the parent's name + '-fork')"),
         quiet: bool = typer.Option(False, help="no live progress display")):
    """Fork episodes at a step with other agents, into a new run folder that names its parent."""
    from academe.simulation.fork import ForkError, fork_points, make_fork
    from academe.simulation.replay import episodes_of
    from academe.simulation.simulate import resume_run

    which = "all" if all_ else "unsolved" if unsolved else "listed"
    if which == "listed" and not episode:
        _fail("say which episodes to fork: --episode ID (repeatable), --unsolved or --all")
    if (at is None) == (before is None):
        _fail("say where to fork: --at STEP, or --before ROLE")
    substitutions = {}
    for item in agent:
        target, sep, what = item.partition("=")
        if not sep or not target or not what:
            _fail(f"--agent {item!r}: write ROLE=WHAT, e.g. student=other-student or student=smollm2@v2")
        substitutions[target] = what
    try:
        points = fork_points(episodes_of(run_dir), list(episode), which, at, before)
        fork_dir = make_fork(run_dir, points, substitutions, with_, stop_after, name)
    except (FileNotFoundError, ForkError, ConfigError, LogFormatError, LogDamaged) as exc:
        _fail(str(exc))
    console.print(f"forked {len(points)} episode(s) of {run_dir} into {fork_dir}")
    summary = _guarded(lambda: _live_run(lambda on_progress: resume_run(fork_dir, on_progress), quiet), fork_dir)
    console.print(summary_table(summary, fork_dir))
    console.print(f"compare: academe compare {run_dir} {fork_dir}")
    _exit_if_all_failed(summary)


@app.command()
def compare(run_a: Path = typer.Argument(..., help="a run folder"), run_b: Path = typer.Argument(..., help="another"),
            plot: Optional[Path] = typer.Option(None, help="where to draw the comparison (default: "
                                                "RUN_B/compare.png)"),
            as_json: bool = typer.Option(False, "--json", help="the comparison as JSON")):
    """Pair two runs' episodes (by parent for a fork, else by task) and show their outcomes side by side."""
    from academe.simulation.compare import compare_runs, metric_rows, plot_comparison

    try:
        result = compare_runs(run_a, run_b)
    except (FileNotFoundError, ValueError, LogFormatError, LogDamaged) as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(result, indent=2))
        return
    console.print(f"A: {run_a}\nB: {run_b}")
    table = Table("metric", "A", "B", title=f"{result['pairs']} episodes paired by {result['paired_by']}")
    for row in metric_rows(result):
        table.add_row(*row)
    console.print(table)
    console.print("outcomes: " + ", ".join(f"{k}: {v}" for k, v in result["transitions"].items()))
    if result["changed"]:
        changed = Table(Column("task", overflow="fold"), "episode A", "episode B", "A", "B", "turns A", "turns B",
                        title=f"{len(result['changed'])} pair(s) whose outcome differs")
        for c in result["changed"][:30]:
            changed.add_row(escape(c["task"]), str(c["episode_a"]), str(c["episode_b"]), c["a"], c["b"],
                            str(c["turns_a"]), str(c["turns_b"]))
        console.print(changed)
        if len(result["changed"]) > 30:
            console.print(f"... and {len(result['changed']) - 30} more (--json lists all)")
    path = plot_comparison(result, plot or run_b / "compare.png")
    console.print(f"plot: {path}")


@export_app.command("html")
def export_html(run_dir: Path = typer.Argument(..., help="a run folder"),
                out: Optional[Path] = typer.Option(None, help="the page to write (default: RUN_DIR/dialogues.html)")):
    """A self-contained page (no server, no network) with every episode, filters, and links to fork parents."""
    from academe.simulation.html import export_html as write_page

    try:
        page = write_page(run_dir, out)
    except (FileNotFoundError, LogFormatError, LogDamaged) as exc:
        _fail(str(exc))
    console.print(f"wrote {page}")


@export_app.command("pairs")
def export_pairs(fork_dir: Path = typer.Argument(..., help="a fork's run folder"),
                 out: Optional[Path] = typer.Option(None, help="JSONL to write (default: FORK_DIR/pairs.jsonl)")):
    """Each turn the fork said beside what its parent said at that step (e.g. model vs human teacher)."""
    from academe.simulation.compare import turn_pairs

    try:
        rows = turn_pairs(fork_dir)
    except (FileNotFoundError, LogFormatError, LogDamaged) as exc:
        _fail(str(exc))
    if not rows:
        _fail(f"{fork_dir} has no turn beside a parent's: is it a fork whose parent folder is still there?")
    path = out or fork_dir / "pairs.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    console.print(f"wrote {len(rows)} pairs to {path}")


@import_app.command("mathdial")
def import_mathdial(path: Path = typer.Argument(..., help="a MathDial .jsonl file"),
                    out: str = typer.Option("runs", help="folder that receives the run folder"),
                    name: str = typer.Option("mathdial", help="run name"),
                    limit: Optional[int] = typer.Option(None, help="import only the first N readable rows")):
    """Import MathDial's human tutoring dialogues (teacher moves as annotations) and print their statistics."""
    from academe.protocols.tasks import TaskFileError
    from academe.simulation.mathdial import import_mathdial as do_import

    try:
        run_dir, stats, problems = do_import(path, out, name, limit)
    except (TaskFileError, ValueError) as exc:
        _fail(str(exc))
    for problem in problems:
        console.print(f"[yellow]left out[/] {escape(str(path))} {escape(problem)}", soft_wrap=True)
    table = Table(title=f"MathDial import: {run_dir.name}", show_header=False)
    table.add_row("dialogues", f"{stats['dialogues']} ({stats['rows_left_out']} row(s) left out)")
    table.add_row("turns", f"{stats['turns']['teacher']} teacher, {stats['turns']['student']} student "
                  f"(mean {stats['mean_turns']} per dialogue; {stats['merged_turns']} joined to the turn before)")
    table.add_row("teacher moves", ", ".join(f"{k} {v}" for k, v in stats["teacher_moves"].items()))
    table.add_row("self-correctness", ", ".join(f"{k}: {v}" for k, v in stats["self_correctness"].items()))
    table.add_row("success", f"{stats['success']} of {stats['dialogues']} ({percent(stats['success_rate'])})")
    table.add_row("telling", f"{stats['telling']} of {stats['dialogues']} ({percent(stats['telling_rate'])})")
    for curve, points in stats["at_k"].items():
        table.add_row(curve, "  ".join(f"k={k}: {v:.1%}" for k, v in list(points.items())[:8]))
    solved, said = stats["success_where_teacher_said_solved"]
    table.add_row("success where the teacher said solved", f"{solved} of {said}")
    table.add_row("run folder", str(run_dir))
    console.print(table)


def _verify(run_dir: Path) -> None:
    """``replay --verify``: exit 0 when today's code reproduces the log, 1 with the divergences."""
    from academe.simulation.verify import verify_run

    try:
        result = verify_run(run_dir)
    except (FileNotFoundError, ConfigError, LogFormatError, LogDamaged) as exc:
        _fail(str(exc))
    for note in result.skipped:
        console.print(f"[yellow]not verified:[/] {escape(note)}", soft_wrap=True)
    if result.skipped:
        raise typer.Exit(1)
    for note in result.damaged:
        console.print(f"[red]damaged log, left out:[/] {escape(note)}", soft_wrap=True)
    for divergence in result.divergences:
        console.print(f"[red]diverged[/] {escape(str(divergence))}", soft_wrap=True)
    decisions = f", {result.decisions} program decisions" if result.decisions else ""
    verdict = "[green]verified[/]" if result.ok else f"[red]{len(result.divergences)} episode(s) diverged[/]"
    console.print(f"{verdict}: {result.episodes} episodes, {result.steps} steps{decisions} re-executed against "
                  f"the log of {run_dir}")
    if not result.ok:
        raise typer.Exit(1)


@protocols_app.callback()
def protocols(ctx: typer.Context):
    """List the protocols and programs."""
    if ctx.invoked_subcommand is None:
        for protocol in PROTOCOLS.values():
            console.print(f"protocol [bold]{protocol.name}[/]  roles: {', '.join(protocol.roles)}  {protocol.description}")
        for program in PROGRAMS.values():
            console.print(f"program  [bold]{program.name}[/]  roles: {', '.join(program.roles)}  {program.description}")


@protocols_app.command("show")
def show(name: str = typer.Argument(..., help="a protocol or program: built-in name or 'package.module:name'"),
         picture: Path = typer.Option(None, help="where to write the graph (.png/.svg)")):
    """Print a protocol's roles, phases, options and training data, or a program's stages, and draw its graph."""
    try:
        found = get_program(name) if name in PROGRAMS or _is_program(name) else get_protocol(name)
    except ProtocolError as exc:
        _fail(str(exc))
    kind = "program" if isinstance(found, Program) else "protocol"
    console.print(f"{kind} [bold]{found.name}[/]: {found.description}")
    console.print(f"roles: {', '.join(found.roles)}; first: {', '.join(found.first)}")
    if isinstance(found, Program):
        table = Table("stage", "leads to", "what it receives")
        for stage, spec in found.stages.items():
            table.add_row(stage, ", ".join(spec.then), spec.doc)
        console.print(table)
        console.print(f"episode protocols: {', '.join(found.protocols)}; trains: "
                      f"{', '.join(f'{r} ({k})' for r, k in found.trains.items()) or 'nothing'}")
    else:
        table = Table("phase", "spoken by", "leads to", "what happens")
        for phase, spec in found.phases.items():
            table.add_row(phase, ", ".join(spec.roles), ", ".join(spec.then), spec.doc)
        console.print(table)
        for spec in found.train:
            console.print(f"training data: {json.dumps(spec.model_dump())}")
    for option, schema in found.options.model_json_schema().get("properties", {}).items():
        console.print(f"option {option} (default {schema.get('default')!r}): {schema.get('description', '')}")
    path = found.draw(str(picture or f"{found.name}-{kind}.png"))
    console.print(f"{kind} graph written to {path}")


def _is_program(name: str) -> bool:
    """A user's definition by module path is a program if it is a Program."""
    if ":" not in name:
        return False
    try:
        get_program(name)
    except ProtocolError:
        return False
    return True
