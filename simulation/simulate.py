"""Start, resume and summarise a simulation from a config: the code behind ``academe run``/``resume``.

Config is turned into flat arguments here (model specs, agent specs, the protocol's options); no
actor ever receives the config tree.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from academe.agents.agent import AgentSpec
from academe.agents.records import Prompt, Task
from academe.protocols import get_protocol
from academe.protocols.engine import Options, Outcome, Protocol, ProtocolError
from academe.protocols.tasks import TaskFileError, generate_word_problems, load_hf_dataset, load_task_file
from academe.simulation.actors import ModelPool
from academe.simulation.config import ConfigError, SimulationConfig, TaskSection, describe, dump_config, load_config
from academe.simulation.log import DialogueLog, read_steps
from academe.simulation.runner import Episode, Progress, Runner

CONFIG_FILE, SUMMARY_FILE = "config.yaml", "summary.json"


def select_tasks(t: TaskSection, n: int, run_seed: int) -> list[Task]:
    """``n`` tasks in episode order (a source shorter than that, or ``limit``, is cycled)."""
    if t.source == "generated":
        seed = run_seed if t.seed is None else t.seed
        pool = generate_word_problems(min(n, t.limit or n) + t.offset, steps=t.steps, max_value=t.max_value,
                                      seed=seed)[t.offset:]
    else:
        source = load_task_file(t.path) if t.source == "file" else load_hf_dataset(t.path, t.split, t.hf_config)
        pool = source[t.offset:][: t.limit]
        if not pool:
            raise ConfigError(f"tasks.offset {t.offset} skips all {len(source)} tasks of {t.path}")
    return [pool[i % len(pool)] for i in range(n)]


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
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(address=config.ray.address, num_cpus=config.ray.num_cpus if not config.ray.address else None,
             include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def restore(protocol: Protocol, run_dir: Path) -> tuple[dict[int, Episode], dict[int, Outcome]]:
    """From the log: finished episodes' outcomes, and unfinished ones as of their last logged step."""
    last: dict[int, dict] = {}
    for record in read_steps(run_dir):
        if record["episode"] not in last or record["step"] > last[record["episode"]]["step"]:
            last[record["episode"]] = record
    restored, finished = {}, {}
    for episode_id, record in last.items():
        if record["outcome"] is not None:
            finished[episode_id] = Outcome.model_validate(record["outcome"])
        else:
            restored[episode_id] = Episode(
                id=episode_id, state=protocol.state.model_validate(record["state"]),
                phase=record["next_phase"], step=record["step"],
                asks=[Prompt.model_validate(a) for a in record["asks"]])
    return restored, finished


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, checked before any folder is made or any model is loaded."""

    protocol: Protocol
    options: Options
    agents: dict[str, AgentSpec]
    tasks: list[Task]


def plan(config: SimulationConfig) -> Plan:
    """Resolve the protocol, its options, the role bindings and the tasks; ConfigError if any is bad."""
    try:
        protocol = get_protocol(config.protocol.name)
        agents = config.agent_specs()
        protocol.check_bindings({a.role: a.name for a in agents.values()})
        options = protocol.parse_options(config.protocol.options)
        for model, section in config.training.items():
            try:
                protocol.training_for(section.role, section.kind)
            except ProtocolError as exc:
                raise ConfigError(f"training.{model}: {exc}") from None
        return Plan(protocol, options, agents, select_tasks(config.tasks, config.run.episodes, config.run.seed))
    except ValidationError as exc:
        raise ConfigError(describe(exc, "protocol.options")) from None
    except (ProtocolError, TaskFileError) as exc:
        raise ConfigError(str(exc)) from None


def execute(config: SimulationConfig, checked: Plan, run_dir: Path,
            on_progress: Callable[[Progress], None] | None = None, resume: bool = False) -> dict:
    restored, finished = restore(checked.protocol, run_dir) if resume else ({}, {})
    started = time.perf_counter()
    with ray_session(config):
        check_resources(config)
        pool = ModelPool(config.models, use_ray=config.ray.enabled)
        placement = pool.describe()
        try:
            hooks = training_hooks(config, checked, run_dir)
            for hook in hooks:  # restore and publish the last checkpoint, or measure the untrained model
                asyncio.run(hook.start(pool, len(finished)))
            runner = Runner(checked.protocol, checked.options, checked.agents, pool, DialogueLog(run_dir),
                            run_id=run_dir.name, seed=config.run.seed, concurrency=config.run.concurrency,
                            max_batch={n: m.max_batch_size for n, m in config.models.items()},
                            on_progress=on_progress, hooks=hooks)
            outcomes = runner.run(checked.tasks, restored=restored, finished=finished)
        finally:
            pool.shutdown()
    wall = time.perf_counter() - started
    summary = summarize(outcomes, runner.progress, wall)
    summary["models"] = placement
    if hooks:
        from academe.trainers.plot import plot_training

        summary["training"] = [hook.summary() for hook in hooks]
        summary["training_s"] = round(sum(hook.training_s for hook in hooks), 2)
        summary["simulating_s"] = round(wall - summary["training_s"], 2)
        summary["learning_curve"] = str(plot_training(summary["training"], run_dir / "learning_curve.png"))
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def prepare_run_dir(config: SimulationConfig) -> Path:
    """A new run folder holding the resolved config (what ``resume`` reads back)."""
    run_dir = new_run_dir(config)
    run_dir.mkdir(parents=True)
    (run_dir / CONFIG_FILE).write_text(dump_config(config))
    return run_dir


def check_resources(config: SimulationConfig) -> None:
    """Refuse a run whose actors cannot all be placed at once (it would wait forever)."""
    if not config.ray.enabled:
        return
    import ray

    total = ray.cluster_resources()
    for resource, key in (("CPU", "num_cpus"), ("GPU", "num_gpus")):
        wanted = sum(getattr(m, key) for m in config.models.values()) + sum(
            getattr(t, key) for t in config.training.values())
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
    if config.evaluation is not None:
        role = config.evaluation.role
        agent = next((a for a in checked.agents.values() if a.role == role), None)
        if agent is None:
            raise ConfigError(f"evaluation.role: no agent has role {role!r}")
        seen = {t.question for t in checked.tasks}
        held_out = [t for t in select_tasks(config.evaluation.tasks, config.evaluation.count, config.run.seed)
                    if t.question not in seen]
        if not held_out:
            raise ConfigError("evaluation.tasks: every held-out task also appears in the run; pick other tasks")
        evaluation = Evaluation(agent, checked.protocol, checked.options, held_out)
    return [ScheduledTraining(model, section, config.models[model], checked.protocol, run_dir,
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
    config = load_config(run_dir / CONFIG_FILE)
    return execute(config, plan(config), run_dir, on_progress, resume=True)


def summarize(outcomes: dict[int, Outcome], progress: Progress, wall_s: float) -> dict:
    """Solve rate, mean score and metrics, and for each ``*_at`` metric its ``@k`` curve
    (e.g. success@k: share of episodes with success_at <= k)."""
    n = len(outcomes)
    values = list(outcomes.values())
    metric_names = sorted({k for o in values for k in o.metrics})
    at_curves = {}
    for name in (m for m in metric_names if m.endswith("_at")):
        turns = [o.metrics.get(name) for o in values]
        horizon = int(max((t for t in turns if t is not None), default=0))
        at_curves[f"{name[:-3]}@k"] = {
            str(k): sum(1 for t in turns if t is not None and t <= k) / n for k in range(1, horizon + 1)
        }
    errors = [o.error for o in values if o.error]
    return {
        "episodes": n,
        "solved": sum(o.solved for o in values),
        "solve_rate": sum(o.solved for o in values) / n if n else 0.0,
        "mean_score": sum(o.score for o in values) / n if n else 0.0,
        "metrics": {m: sum(o.metrics.get(m, 0.0) for o in values) / n for m in metric_names
                    if not m.endswith("_at")},
        "at_k": at_curves,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "messages_this_session": progress.messages,
        "completion_tokens_this_session": progress.completion_tokens,
        "wall_s": round(wall_s, 2),
        "messages_per_s": round(progress.messages / progress.elapsed, 2) if progress.elapsed else 0.0,
    }
