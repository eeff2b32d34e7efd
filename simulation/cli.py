"""The ``academe`` command line: run, resume, replay, protocols."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from academe.protocols import PROTOCOLS, ProtocolError, get_protocol
from academe.protocols.engine import draw
from academe.simulation.config import ConfigError, load_config
from academe.simulation.runner import Progress

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="academe: LLM agents that teach, question and learn from each other, on Ray.")
protocols_app = typer.Typer(help="List interaction protocols, or show one.", invoke_without_command=True)
app.add_typer(protocols_app, name="protocols")
console = Console()


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
    table.add_row("episodes", str(summary["episodes"]))
    table.add_row("solved", f"{summary['solved']} ({summary['solve_rate']:.1%})")
    for name, curve in summary["at_k"].items():
        table.add_row(name, "  ".join(f"k={k}: {v:.1%}" for k, v in curve.items()))
    for name, value in summary["metrics"].items():
        table.add_row(f"mean {name}", f"{value:.2f}")
    table.add_row("messages", f"{summary['messages_this_session']} ({summary['messages_per_s']}/s)")
    table.add_row("completion tokens", str(summary["completion_tokens_this_session"]))
    table.add_row("wall time", f"{summary['wall_s']} s")
    for training in summary.get("training", []):
        trained = [p for p in training["phases"] if p["event"] == "trained"]
        table.add_row(f"trained {training['model']}", f"versions {', '.join(map(str, training['versions'])) or 'none'}; "
                      + "; ".join(f"v{p['version']}: loss {p['loss_first']:.2f}->{p['loss_last']:.2f} "
                                  f"({p['examples']} examples, {p['seconds']:.0f} s)" for p in trained))
        if training["accuracy"]:
            table.add_row("held-out accuracy", "  ".join(f"v{v}: {a:.1%}" for v, a in training["accuracy"]))
        for p in training["phases"]:
            if p["event"] in ("skipped", "failed"):
                table.add_row(f"[yellow]{p['event']}[/]", escape(p["reason"]))
            if p.get("publish_failed"):
                table.add_row("[red]publication failed[/]", escape(str(p["publish_failed"])))
    if "training_s" in summary:
        table.add_row("time in training phases / simulating",
                      f"{summary['training_s']} s / {summary['simulating_s']} s (phases: train, checkpoint, publish, evaluate)")
        table.add_row("learning curve", summary["learning_curve"])
    if summary["errors"]:
        table.add_row("[red]episodes with errors[/]", f"{summary['errors']}: {summary['first_error']}")
    table.add_row("run folder", str(run_dir))
    return table


def _live_run(action, quiet: bool):
    if quiet:
        return action(None)
    with Live(progress_line(Progress(total=0)), console=console, refresh_per_second=4) as live:
        return action(lambda p: live.update(progress_line(p)))


def _guarded(action, run_dir: Path):
    """Run ``action``; if the disk fills or the log cannot be written, say so and how to go on."""
    try:
        return action()
    except OSError as exc:
        _fail(f"the run stopped: {exc}. Everything logged before this is kept in {run_dir}; "
              f"fix the cause (e.g. free disk space), then: academe resume {run_dir}")


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
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
    console.print(f"running [bold]{cfg.run.episodes}[/] episodes of [bold]{cfg.protocol.name}[/] "
                  f"({cfg.run.concurrency} at once) with agents {', '.join(cfg.agents)} into {run_dir}")
    summary = _guarded(lambda: _live_run(lambda on_progress: execute(cfg, checked, run_dir, on_progress), quiet),
                       run_dir)
    console.print(summary_table(summary, run_dir))
    console.print(f"replay a dialogue: academe replay {run_dir} --episode 0")


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="the run folder of a run that was interrupted"),
           quiet: bool = typer.Option(False, help="no live progress display")):
    """Continue an interrupted run: finished episodes are kept, the others go on from their last step."""
    from academe.simulation.simulate import resume_run

    try:
        summary = _guarded(lambda: _live_run(lambda on_progress: resume_run(run_dir, on_progress), quiet), run_dir)
    except (FileNotFoundError, ConfigError) as exc:
        _fail(str(exc))
    console.print(summary_table(summary, run_dir))


@app.command()
def replay(run_dir: Path = typer.Argument(..., help="a run folder"),
           episode: Optional[int] = typer.Option(None, help="one episode id; default: all")):
    """Print logged dialogues: who said what, teacher moves, model versions, outcomes."""
    from academe.simulation.replay import print_dialogues

    try:
        print_dialogues(run_dir, episode, console)
    except (FileNotFoundError, KeyError) as exc:
        _fail(str(exc).strip("'\""))


@protocols_app.callback()
def protocols(ctx: typer.Context):
    """List the protocols."""
    if ctx.invoked_subcommand is None:
        for protocol in PROTOCOLS.values():
            console.print(f"[bold]{protocol.name}[/]  roles: {', '.join(protocol.roles)}  {protocol.description}")


@protocols_app.command("show")
def show(name: str, picture: Path = typer.Option(None, help="where to write the phase graph (.png/.svg)")):
    """Print a protocol's roles, phases, options and training data, and draw its phase graph."""
    try:
        protocol = get_protocol(name)
    except ProtocolError as exc:
        _fail(str(exc))
    console.print(f"[bold]{protocol.name}[/]: {protocol.description}")
    console.print(f"roles: {', '.join(protocol.roles)}; first phase: {', '.join(protocol.first)}")
    table = Table("phase", "spoken by", "leads to", "what happens")
    for phase, spec in protocol.phases.items():
        table.add_row(phase, spec.role, ", ".join(spec.then), spec.doc)
    console.print(table)
    options = protocol.options.model_json_schema().get("properties", {})
    for option, schema in options.items():
        console.print(f"option {option} (default {schema.get('default')!r}): {schema.get('description', '')}")
    for spec in protocol.train:
        console.print(f"training data: {json.dumps(spec.model_dump())}")
    path = draw(protocol, str(picture or f"{protocol.name}-phases.png"))
    console.print(f"phase graph written to {path}")
