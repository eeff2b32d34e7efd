"""Forking: keep an episode's logged turns up to step k, and let other agents speak from there.

A fork is an ordinary run folder (config, log, resume) plus ``lineage.json`` naming each
episode's parent. Its log starts with the parent's records up to the fork step, the last of
them re-addressed to the substituted agents; running it is resuming it. Episodes keep their
parent's seeds, so a fork with the original agents and greedy decoding says exactly what the
parent said. An agent is replaced by another agent (of the parent's config or of an extra file),
by the same agent on another model, or on another version of its model (a checkpoint of the
parent run: ``model@vN``).
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from academe.protocols.engine import Ask, Next
from academe.simulation.config import ConfigError, SimulationConfig, load_config, parse_config
from academe.simulation.run_folder import write_config
from academe.simulation.lineage import Lineage, Origin, read_lineage, write_lineage
from academe.simulation.log import DialogueLog
from academe.simulation.records import StepRecord
from academe.simulation.replay import episodes_of
from academe.simulation.runner import Batch, addressed_asks


class ForkError(ValueError):
    """A fork that cannot be made; the message names the episode, step or agent at fault."""


@dataclass(frozen=True)
class ForkPoint:
    parent: int  # the parent's episode
    step: int  # its logged steps 0..step are kept; what step asked is answered anew


def fork_points(grouped: dict[int, list[StepRecord]], episodes: list[int], which: str, at: int | None,
                before_role: str | None = None) -> list[ForkPoint]:
    """Where to fork: the listed episodes (or all, or the unsolved ones) at step ``at``, or before
    every turn of ``before_role`` (one fork per such turn)."""
    if which == "listed":
        missing = [e for e in episodes if e not in grouped]
        if missing:
            raise ForkError(f"episode {', '.join(map(str, missing))} is not in the parent run; it has episodes "
                            f"{min(grouped, default=0)}..{max(grouped, default=-1)}")
        chosen = episodes
    else:
        chosen = [e for e, records in grouped.items()
                  if which == "all" or (records[-1].outcome is not None and records[-1].outcome.solved is False)]
    if before_role is not None:
        points = [ForkPoint(e, r.step) for e in chosen for r in grouped[e] if any(a.role == before_role for a in r.asks)]
        if not points:
            raise ForkError(f"no logged step of the chosen episodes asks role {before_role!r} to speak")
        return points
    points, bad = [], []
    for e in chosen:
        steps = {r.step: r for r in grouped[e]}
        if at in steps and steps[at].asks:
            points.append(ForkPoint(e, at))
        else:
            last = max(steps)
            bad.append(f"episode {e} (steps 0..{last}, ended)" if grouped[e][-1].outcome is not None else
                       f"episode {e} (logged up to step {last})")
    if bad:
        raise ForkError(f"cannot fork at step {at}: it must be a logged step that asked someone to speak; "
                        f"not so in {', '.join(bad)}")
    return points


def substituted_config(parent: SimulationConfig, substitutions: dict[str, str], extra: Path | None,
                       name: str | None) -> tuple[SimulationConfig, dict[str, int]]:
    """The parent's config with agents replaced (training and evaluation dropped: a fork does not
    train); returns it and the model versions asked for (``model@vN``)."""
    raw = parent.model_dump(mode="json")
    added = {"models": {}, "agents": {}}
    if extra is not None:
        if not Path(extra).is_file():
            raise ForkError(f"--with {extra}: no such file")
        added = yaml.safe_load(Path(extra).read_text()) or {}
        unknown = set(added) - {"models", "agents"}
        if unknown:
            raise ForkError(f"--with {extra}: holds {', '.join(sorted(unknown))}; it may hold only models and agents")
        clash = set(added.get("models") or {}) & set(raw["models"])
        if clash:
            raise ForkError(f"--with {extra}: model(s) {', '.join(sorted(clash))} are already in the parent run's "
                            "config; give them other names")
        extra_config = parse_config({"models": {**raw["models"], **(added.get("models") or {})},
                                     "agents": added.get("agents") or {}}, str(extra))
        raw["models"].update(added.get("models") or {})
    else:
        extra_config = None
    specs = parent.agent_specs()
    offered = dict(specs) | (extra_config.agent_specs() if extra_config else {})
    agents = {n: a.model_dump(mode="json", exclude={"name"}) for n, a in specs.items()}
    versions: dict[str, int] = {}
    for target, what in substitutions.items():
        replaced = [n for n, a in specs.items() if target in (a.role, n)]
        if not replaced:
            roles = sorted({a.role for a in specs.values()})
            raise ForkError(f"--agent {target}={what}: the parent run has no role or agent {target!r} "
                            f"(roles: {', '.join(roles)}; agents: {', '.join(specs)})")
        role = specs[replaced[0]].role
        for i, old in enumerate(replaced):
            agent = dict(agents.pop(old))
            if what in offered:
                if offered[what].role != role:
                    raise ForkError(f"--agent {target}={what}: agent {what!r} plays {offered[what].role!r}; it "
                                    f"cannot play {role!r} (give it role: {role} in {extra or 'the config'})")
                agent = offered[what].model_dump(mode="json", exclude={"name"}) | {"role": role}
                new_name = what if len(replaced) == 1 else f"{what}-{i}"
            else:
                model, _, version = what.partition("@")
                if model not in raw["models"]:
                    raise ForkError(f"--agent {target}={what}: no agent or model named {model!r} (agents: "
                                    f"{', '.join(offered)}; models: {', '.join(raw['models'])})")
                if version:
                    versions[model] = checkpoint_version(parent, model, version, target, what)
                agent["model"], new_name = model, old
            agents[new_name] = agent
    raw["agents"] = agents
    raw["training"], raw["evaluation"] = {}, None
    raw["run"]["name"] = name or f"{parent.run.name}-fork"
    try:
        return parse_config(raw, "the fork's config"), versions
    except ConfigError as exc:
        raise ForkError(str(exc)) from None


def checkpoint_version(parent: SimulationConfig, model: str, version: str, target: str, what: str) -> int:
    if not version.startswith("v") or not version[1:].isdigit():
        raise ForkError(f"--agent {target}={what}: a model version is written {model}@vN (e.g. {model}@v2)")
    if model not in parent.training and int(version[1:]) != 0:
        raise ForkError(f"--agent {target}={what}: the parent run did not train {model!r}; only v0 exists")
    return int(version[1:])


def checkpoint_folder(parent_dir: Path, model: str, version: int) -> Path:
    folder = parent_dir / "checkpoints" / model / f"v{version:05d}"
    if not folder.is_dir():
        made = sorted(p.name for p in (parent_dir / "checkpoints" / model).glob("v*") if p.is_dir())
        raise ForkError(f"{model}@v{version}: the parent run has no such checkpoint "
                        f"(it has: {', '.join(made) or 'none'})")
    return folder


def prefix_records(records: list[StepRecord], point: ForkPoint, episode: int, run_id: str, batch: Batch,
                   seed: int, agents: dict) -> list[StepRecord]:
    """The parent's records up to the fork step, as this run's; the last one's asks addressed anew."""
    kept = [r.model_copy(update={"run": run_id, "episode": episode}) for r in records if r.step <= point.step]
    last = kept[-1]
    asks = tuple(Ask(messages=a.asked, role=a.role, seat=a.seat) for a in last.asks)
    nxt = Next(state=last.episode_state(batch.protocol), phase=last.next_phase, asks=asks, notes=last.notes)
    kept[-1] = last.model_copy(update={"asks": addressed_asks(batch, seed, agents, episode, last.step, nxt)})
    return kept


def make_fork(parent_dir: Path, points: list[ForkPoint], substitutions: dict[str, str], extra: Path | None = None,
              stop_after: int | None = None, name: str | None = None, out_dir: str | None = None) -> Path:
    """Write the fork's run folder (all of it or nothing); run it with ``resume_run``."""
    from academe.simulation.simulate import new_run_dir, plan

    if not points:
        raise ForkError("no episode to fork (none matched)")
    parent = load_config(parent_dir / "config.yaml")
    if parent.program is not None:
        raise ForkError(f"{parent_dir} is a run of program {parent.program.name!r}; forking covers protocol runs")
    config, versions = substituted_config(parent, substitutions, extra, name)
    if out_dir is not None:
        config = config.replace(run=config.run.replace(out_dir=out_dir))
    checked = plan(config)
    grouped = episodes_of(parent_dir)
    source = str(Path(parent_dir).resolve())
    grand = read_lineage(parent_dir)
    roots = {e: o.root for e, o in grand.episodes.items()} if grand is not None and grand.kind == "fork" else {}
    lineage = Lineage(kind="fork", source=source, agents=substitutions, stop_after=stop_after, versions=versions,
                      episodes={i: Origin(run=source, episode=p.parent, step=p.step, root=roots.get(p.parent, p.parent))
                                for i, p in enumerate(points)})
    batch = fork_batch(checked, lineage)
    agents = {a.name: a for agents_ in checked.cast.values() for a in agents_}
    final = new_run_dir(config)
    run_id = final.name
    records = [r for i, p in enumerate(points)
               for r in prefix_records(grouped[p.parent], p, i, run_id, batch, config.run.seed, agents)]
    for model, version in versions.items():
        if version:
            checkpoint_folder(parent_dir, model, version)
    partial = final.with_name(f".{run_id}.partial")
    try:
        partial.mkdir(parents=True)
        write_config(partial, config)
        write_lineage(partial, lineage)
        log = DialogueLog(partial)
        log.append(records)
        log.close()
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def fork_batch(checked, lineage: Lineage) -> Batch:
    """The batch a fork runs: each episode's task and seeds (its root episode's), and its stop step if limited."""
    tasks = {e: checked.tasks[o.root] for e, o in lineage.episodes.items()}
    stop_at = ({e: o.step + lineage.stop_after for e, o in lineage.episodes.items()}
               if lineage.stop_after is not None else {})
    return Batch(checked.protocol, checked.options, checked.cast, tasks,
                 seed_ids={e: o.root for e, o in lineage.episodes.items()}, stop_at=stop_at)


def load_versions(pool, config: SimulationConfig, lineage: Lineage) -> None:
    """Serve the checkpoint versions a fork asked for (``model@vN``) from the parent run."""
    if not any(lineage.versions.values()):
        return
    from academe.trainers.handle import ModelTrainer

    parent_dir = Path(lineage.source)
    parent = load_config(parent_dir / "config.yaml")
    for model, version in lineage.versions.items():
        if not version:
            continue
        trainer = ModelTrainer(model, config.trained_spec(model), parent.training[model], parent_dir, config.ray.enabled)
        trainer.version = asyncio.run(trainer.call("load", checkpoint_folder(parent_dir, model, version)))
        report = asyncio.run(trainer.publish(pool))
        if not report.ok:
            raise RuntimeError(f"serving {model}@v{version} failed: {report.failed}")
