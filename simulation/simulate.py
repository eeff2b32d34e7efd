"""Start, resume and summarise a simulation from a config: the code behind ``academe run``/``resume``.

Config is turned into flat arguments here (model specs, agent specs, the protocol's or program's
options); no actor ever receives the config tree. A protocol run is one batch of episodes with
optional scheduled training; a program run hands the same model actors, runner and trainers to the
program runner for all its rounds.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from academe.agents.agent import AgentSpec
from academe.agents.records import Task
from academe.protocols import get_program, get_protocol
from academe.protocols.engine import Options, Protocol, ProtocolError, check_cast
from academe.protocols.program import Program
from academe.protocols.grading import check_task
from academe.protocols.mathdial import load_mathdial_tasks
from academe.protocols.tasks import generate_word_problems, load_hf_dataset, load_task_file
from academe.simulation.actors import ModelPool, ModelStartError
from academe.simulation.config import ConfigError, SimulationConfig, TaskSection, describe, load_config
from academe.simulation.fork import fork_batch, load_versions
from academe.simulation.lineage import read_lineage
from academe.simulation.log import DialogueLog
from academe.simulation.placement import placement_groups
from academe.simulation.run_folder import CONFIG_FILE, SUMMARY_FILE, check_unchanged, locked, write_config
from academe.simulation.program_runner import ProgramRunner, Services
from academe.simulation.runner import Batch, Progress, Runner, restore
from academe.simulation.shards import run_sharded
from academe.simulation.summary import summarize, summarize_program



def select_tasks(t: TaskSection, n: int | None, run_seed: int) -> list[Task]:
    """``n`` tasks in order (a source shorter than that, or ``limit``, is cycled); ``n=None``:
    the source's tasks once (``limit`` of them, if set)."""
    if t.source == "generated":
        if n is None and t.limit is None:
            raise ConfigError("tasks.limit: say how many generated tasks make the program's seed pool")
        count = t.limit if n is None else min(n, t.limit or n)
        seed = run_seed if t.seed is None else t.seed
        pool = generate_word_problems(count + t.offset, steps=t.steps, max_value=t.max_value, seed=seed)[t.offset:]
        if t.grader != "numeric":
            pool = [task.replace(grader=t.grader) for task in pool]
            for task in pool[:1]:  # the grader is the same for all: one check says whether it resolves
                check_task(task)
    else:
        loaders = {"file": lambda: load_task_file(t.path, t.grader), "mathdial": lambda: load_mathdial_tasks(t.path),
                   "hf": lambda: load_hf_dataset(t.path, t.split, t.hf_config, t.grader)}
        source = loaders[t.source]()
        pool = source[t.offset:][: t.limit]
        if not pool:
            raise ConfigError(f"tasks.offset {t.offset} skips all {len(source)} tasks of {t.path}")
    return pool if n is None else [pool[i % len(pool)] for i in range(n)]


def new_run_dir(config: SimulationConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(config.run.out_dir) / f"{config.run.name}-{stamp}"
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    return run_dir


@contextmanager
def ray_session(config: SimulationConfig):
    """Local Ray (the embedded default) or a cluster; leaves an already running session alone."""
    if not config.ray.enabled:
        yield
        return
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        yield
        return
    check_reachable(config.ray.address)
    if starts_local_ray(config.ray.address):
        loopback_only()  # before ray is imported: it reads the setting then
    import ray

    ray.init(address=config.ray.address, num_cpus=config.ray.num_cpus if not config.ray.address else None,
             include_dashboard=config.ray.dashboard, dashboard_host="127.0.0.1", log_to_driver=False,
             configure_logging=False, runtime_env=config.ray.runtime_env)
    try:
        yield
    finally:
        ray.shutdown()


LOOPBACK_SETTING = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray takes loopback as this node's address


def starts_local_ray(address: str | None) -> bool:
    return address in (None, "local") and not os.environ.get("RAY_ADDRESS")


def loopback_only() -> None:
    """A Ray started here serves this process only: its node address is loopback, so its GCS,
    raylet and workers listen on 127.0.0.1 instead of every interface (token auth stays on). Ray
    reads this setting when it is first imported; a process that imported ray before (a notebook,
    say) keeps Ray's default, and is told so."""
    if "ray" in sys.modules and os.environ.get(LOOPBACK_SETTING) != "0":
        print(f"note: ray was imported before academe started it, so the local Ray listens on every interface; "
              f"set {LOOPBACK_SETTING}=0 before importing ray to keep it on loopback", file=sys.stderr)
        return
    os.environ.setdefault(LOOPBACK_SETTING, "0")


def check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """A cluster address where nothing answers fails in seconds, not after Ray's minutes of retries."""
    if address in (None, "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray.address {address!r}: write host:port (the head's GCS, e.g. 10.0.0.5:6379), "
                          "ray://host:10001, or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"ray.address {address!r}: nothing answers at {host}:{port} ({exc}); start the cluster "
                          "(ray start --head) or fix the address") from None


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, checked before any folder is made or any model is loaded."""

    protocol: Protocol | None
    program: Program | None
    options: Options
    cast: dict[str, tuple[AgentSpec, ...]]
    tasks: list[Task]
    held_out: list[Task] = field(default_factory=list)
    also_held_out: dict[str, list[Task]] = field(default_factory=dict)  # evaluation.also, by name

    @property
    def name(self) -> str:
        return (self.program or self.protocol).name


def plan(config: SimulationConfig) -> Plan:
    """Resolve the protocol or program, its options, the cast and the tasks; ConfigError if any is bad."""
    section = "program.options" if config.program else "protocol.options"
    check_models(config)
    try:
        cast = config.cast()
        if config.program is not None:
            program = get_program(config.program.name)
            check_cast(f"program {program.name!r}", program.roles, {r: [a.name for a in a_] for r, a_ in cast.items()})
            options = program.parse_options(config.program.options)
            check_program_training(config, program, cast)
            tasks = select_tasks(config.tasks, None, config.run.seed)
            held_out = held_out_tasks(config, tasks)
            program.begin(tuple(tasks), tuple(held_out), options)  # pure: a start that fails, fails here
            return Plan(None, program, options, cast, tasks, held_out, also_held_out(config, tasks))
        protocol = get_protocol(config.protocol.name)
        protocol.check_bindings({role: [a.name for a in agents] for role, agents in cast.items()})
        options = protocol.parse_options(config.protocol.options)
        for model, training in config.training.items():
            try:
                protocol.training_for(training.role, training.kind)
            except ProtocolError as exc:
                raise ConfigError(f"training.{model}: {exc}") from None
        tasks = select_tasks(config.tasks, config.run.episodes, config.run.seed)
        return Plan(protocol, None, options, cast, tasks, held_out_tasks(config, tasks), also_held_out(config, tasks))
    except ValidationError as exc:
        raise ConfigError(describe(exc, "config", prefix=section)) from None
    except (ProtocolError, ValueError) as exc:  # TaskFileError, bad graders, rows an HF data set cannot give
        raise ConfigError(str(exc)) from None


def check_models(config: SimulationConfig) -> None:
    """Each model passes its kind's check before anything starts (scripted functions import, model
    paths are models); on a cluster, files are the workers' business and are not checked here."""
    for name, spec in config.models.items():
        kind = spec.backend
        if kind.local_files and config.ray.address is not None:
            continue
        try:
            if not kind.registered:
                kind.loader()  # a user's own backend: its function must import
        except ValueError as exc:
            raise ConfigError(f"models.{name}.kind: {exc}") from None
        try:
            kind.check_model(spec)
        except ImportError as exc:  # what the kind needs is not installed here
            raise ConfigError(f"models.{name}.kind: {exc}") from None
        except (ValueError, OSError) as exc:
            where = "" if str(exc).startswith("options.") else ".path"
            raise ConfigError(f"models.{name}{where}: {exc}") from None


def check_program_training(config: SimulationConfig, program: Program, cast) -> None:
    """Each role the program trains has a training section for its model, and no other model has one."""
    trained: dict[str, str] = {}
    for role in program.trains:
        trained.setdefault(cast[role][0].model, role)
    for model, role in trained.items():
        if model not in config.training:
            raise ConfigError(f"program {program.name!r} trains role {role!r}, played on model {model!r}: "
                              f"add training.{model} (its settings) to the config")
    for model in config.training:
        if model not in trained:
            raise ConfigError(f"training.{model}: program {program.name!r} trains only the model(s) of "
                              f"{', '.join(program.trains) or 'no role'} ({', '.join(trained) or 'none'})")
    if len(set(trained)) < len(program.trains):
        shared = {m: [r for r in program.trains if cast[r][0].model == m] for m in trained}
        both = next(roles for roles in shared.values() if len(roles) > 1)
        raise ConfigError(f"roles {' and '.join(both)} both play model {cast[both[0]][0].model!r}, and program "
                          f"{program.name!r} trains each of them: give each trained role its own model")
    schedule = ("role", "kind", "every_episodes", "wait", "max_staleness")  # what only a protocol run reads
    for model, section in config.training.items():
        ignored = [f for f in schedule if getattr(section, f) != type(section).model_fields[f].default]
        if ignored:
            raise ConfigError(f"training.{model}: {', '.join(ignored)} set a protocol run's schedule; "
                              f"program {program.name!r} decides itself when and on what {model!r} trains")


def held_out_tasks(config: SimulationConfig, tasks: list[Task]) -> list[Task]:
    """The evaluation tasks, less any that also appear among the run's tasks."""
    if config.evaluation is None:
        return []
    if config.program is not None and config.evaluation.role is not None:
        raise ConfigError(f"evaluation.role: program {config.program.name!r} says itself which role it evaluates; "
                          "remove evaluation.role")
    if config.program is None and config.evaluation.learner not in config.cast():
        raise ConfigError(f"evaluation.role: no agent has role {config.evaluation.learner!r}")
    return unseen(config.evaluation.tasks, config.evaluation.count, config.run.seed, tasks, "evaluation.tasks")


def also_held_out(config: SimulationConfig, tasks: list[Task]) -> dict[str, list[Task]]:
    """The further held-out sets (``evaluation.also``), each less any task the run also has."""
    if config.evaluation is None:
        return {}
    return {name: unseen(held.tasks, held.count, config.run.seed, tasks, f"evaluation.also.{name}.tasks")
            for name, held in config.evaluation.also.items()}


def unseen(section: TaskSection, count: int, run_seed: int, tasks: list[Task], where: str) -> list[Task]:
    seen = {t.question for t in tasks}
    held_out = [t for t in select_tasks(section, count, run_seed) if t.question not in seen]
    if not held_out:
        raise ConfigError(f"{where}: every held-out task also appears in the run; pick other tasks")
    return held_out


def execute(config: SimulationConfig, checked: Plan, run_dir: Path,
            on_progress: Callable[[Progress], None] | None = None, resume: bool = False) -> dict:
    started = time.perf_counter()
    with locked(run_dir), ray_session(config), placement_groups(config):
        check_resources(config)
        pool = start_models(config)
        try:
            runner = Runner(pool, DialogueLog(run_dir), run_id=run_dir.name, seed=config.run.seed,
                            concurrency=config.run.concurrency,
                            max_batch={n: m.max_batch_size for n, m in config.models.items()},
                            on_progress=on_progress)
            if checked.program is not None:
                summary = run_program(config, checked, run_dir, pool, runner)
            else:
                summary = run_protocol(config, checked, run_dir, pool, runner, resume)
            summary["models"] = pool.describe()
        finally:
            pool.shutdown()
    summary["wall_s"] = round(time.perf_counter() - started, 2)
    if "training_s" in summary:
        summary["simulating_s"] = round(summary["wall_s"] - summary["training_s"], 2)
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def run_protocol(config: SimulationConfig, checked: Plan, run_dir: Path, pool: ModelPool, runner: Runner,
                 resume: bool) -> dict:
    restored, finished = restore(checked.protocol, run_dir) if resume else ({}, {})
    hooks = training_hooks(config, checked, run_dir)
    for hook in hooks:  # restore and publish the last checkpoint, or measure the untrained model
        asyncio.run(hook.start(pool, len(finished)))
    lineage = read_lineage(run_dir)
    if lineage is not None:  # a fork: its episodes' parent tasks and seeds, on the versions it asked for
        load_versions(pool, config, lineage)
        batch = fork_batch(checked, lineage)
    else:
        batch = Batch(checked.protocol, checked.options, checked.cast, dict(enumerate(checked.tasks)))
    if config.run.shards > 1:
        outcomes, progress = run_sharded(batch, config.run.shards, pool, run_dir, runner.run_id, runner.seed,
                                         runner.concurrency, runner.max_batch, restored, finished, runner.on_progress)
    else:
        outcomes, progress = runner.run(batch, restored=restored, finished=finished, hooks=hooks), runner.progress
    summary = summarize(outcomes, progress)
    if hooks:
        from academe.trainers.plot import plot_training

        summary["training"] = [hook.summary() for hook in hooks]
        summary["training_s"] = round(sum(hook.training_s for hook in hooks), 2)
        summary["learning_curve"] = str(plot_training(summary["training"], run_dir / "learning_curve.png"))
    return summary


def run_program(config: SimulationConfig, checked: Plan, run_dir: Path, pool: ModelPool, runner: Runner) -> dict:
    services = program_services(config, checked, run_dir, pool)
    for trainer in services.trainers.values():  # a resumed program: its models serve their last checkpoint
        if asyncio.run(trainer.restore()) is not None:
            publication = asyncio.run(services.publish(trainer))
            if not publication.ok:
                raise RuntimeError(f"publishing {trainer.model} v{trainer.version} failed: {publication.failed}; "
                                   "its checkpoint is kept: resume the run to publish it again")
    program_runner = ProgramRunner(checked.program, checked.options, checked.cast, runner, services, run_dir,
                                   checked.held_out, checked.also_held_out)
    stop, decisions, results = program_runner.run(checked.tasks)
    return summarize_program(checked.program, stop, decisions, results, run_dir, runner.messages,
                             runner.completion_tokens)


def program_services(config: SimulationConfig, checked: Plan, run_dir: Path, pool: ModelPool) -> Services:
    """Trainers for the models a program trains, and held-out evaluation (the trainers' module is
    imported only when a program trains)."""
    trainers = {}
    if config.training:
        from academe.trainers.handle import ModelTrainer

        trainers = {model: ModelTrainer(model, config.trained_spec(model), section, run_dir, config.ray.enabled)
                    for model, section in config.training.items()}

    async def evaluate(agent: AgentSpec, protocol: Protocol, tasks: list[Task]) -> tuple[float, int]:
        from academe.trainers.evaluate import accuracy

        return await accuracy(pool, agent, protocol, protocol.options(), tasks, check_role=False)

    async def publish(trainer):
        return await trainer.publish(pool)

    return Services(trainers=trainers, evaluate=evaluate, version=lambda model: pool.call(model, "version"),
                    publish=publish)


def prepare_run_dir(config: SimulationConfig) -> Path:
    """A new run folder holding the resolved config (what ``resume`` reads back)."""
    run_dir = new_run_dir(config)
    run_dir.mkdir(parents=True)
    write_config(run_dir, config)
    return run_dir


def start_models(config: SimulationConfig) -> ModelPool:
    """The run's model actors; one that does not start is named with the agents it would serve."""
    try:
        return ModelPool(config.models, use_ray=config.ray.enabled)
    except ModelStartError as exc:
        served = {exc.model} | {n for n, m in config.models.items() if m.backend.hosted and m.path == exc.model}
        agents = [a.name for a in config.agent_specs().values() if a.model in served]
        raise ModelStartError(exc.model, f"{exc} (agents on it: {', '.join(agents) or 'none'})") from None


def check_resources(config: SimulationConfig) -> None:
    """Refuse a run whose actors cannot all be placed at once (it would wait forever)."""
    if not config.ray.enabled:
        return
    import ray

    total = ray.cluster_resources()
    actors = [*(m for m in config.models.values() if not m.backend.hosted), *config.training.values()]
    for resource, key in (("CPU", "num_cpus"), ("GPU", "num_gpus")):
        # an actor in a placement group takes from its group's reservation, counted by the group
        wanted = sum(getattr(a, key) for a in actors if a.placement is None) + sum(
            bundle.get(resource, 0) for group in config.placement.values() for bundle in group.bundles)
        if wanted > total.get(resource, 0) + 1e-9:
            raise ConfigError(f"the models and trainers ask for {wanted:g} {resource}s in all (models.*.{key}, "
                              f"training.*.{key}) but the Ray cluster has {total.get(resource, 0):g}; lower them "
                              "(threads: sets torch threads apart from the reservation) or add nodes")


def training_hooks(config: SimulationConfig, checked: Plan, run_dir: Path) -> list:
    """One scheduled trainer per ``training`` entry (trainers are imported only when asked for)."""
    if not config.training:
        return []
    from academe.trainers.schedule import Evaluation, ScheduledTraining

    evaluation = None
    if checked.held_out:
        agent = checked.cast[config.evaluation.learner][0]
        evaluation = Evaluation(agent, checked.protocol, checked.options, checked.held_out, checked.also_held_out)
    return [ScheduledTraining(model, section, config.trained_spec(model), checked.protocol, run_dir,
                              use_ray=config.ray.enabled,
                              evaluation=evaluation if evaluation and evaluation.agent.model == model else None)
            for model, section in config.training.items()]


def start_run(config: SimulationConfig, on_progress=None) -> tuple[Path, dict]:
    checked = plan(config)  # fail on bad input before a run folder exists
    run_dir = prepare_run_dir(config)
    return run_dir, execute(config, checked, run_dir, on_progress)


def resume_run(run_dir: str | Path, on_progress=None) -> dict:
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} has no {CONFIG_FILE}: not a run folder")
    if (run_dir / SUMMARY_FILE).is_file():  # finished: its summary stands, nothing is run again
        return json.loads((run_dir / SUMMARY_FILE).read_text()) | {"already_finished": True}
    config = load_config(run_dir / CONFIG_FILE)
    check_unchanged(run_dir, config)
    return execute(config, plan(config), run_dir, on_progress, resume=True)
