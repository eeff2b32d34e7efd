"""Placement groups from the config: resources reserved together, and the actors placed in them.

A run's groups are created before its models start and removed when it ends. Models and trainers
that name a group's bundle are scheduled into it: a trainer in its model's bundle shares that
model's GPUs (each with a fraction: ``num_gpus: 0.5``), one in another bundle keeps apart. Groups
are looked up by a name unique to this driver's job, so an actor can be (re)started anywhere in
the run without the group object being handed around.
"""

from __future__ import annotations

from contextlib import contextmanager

from academe.agents.backends.base import Placement
from academe.simulation.config import ConfigError, SimulationConfig


def group_name(group: str) -> str:
    import ray

    return f"academe-{ray.get_runtime_context().get_job_id()}-{group}"


@contextmanager
def placement_groups(config: SimulationConfig, timeout_s: float = 60.0):
    """Create the config's placement groups (waiting until the cluster has reserved them); remove
    them afterwards. A group the cluster cannot hold is refused by name, not waited on forever."""
    if not config.placement or not config.ray.enabled:
        yield
        return
    from ray.util.placement_group import placement_group, remove_placement_group

    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for name, section in config.placement.items():
        for i, bundle in enumerate(section.bundles):
            if not any(all(node.get(r, 0) >= amount for r, amount in bundle.items()) for node in nodes):
                raise ConfigError(f"placement.{name}.bundles.{i}: no node of the Ray cluster has {bundle} "
                                  "(a bundle must fit on one node); shrink it or add such a node")
    groups = []
    try:
        for name, section in config.placement.items():
            group = placement_group([dict(b) for b in section.bundles], strategy=section.strategy,
                                    name=group_name(name))
            groups.append(group)
            ready, _ = ray.wait([group.ready()], timeout=timeout_s)
            if not ready:
                raise ConfigError(f"placement.{name}: the Ray cluster did not reserve bundles {section.bundles} "
                                  f"({section.strategy}) within {timeout_s:g} s; it lacks those resources "
                                  f"(it has {ray.cluster_resources()}): shrink the bundles or add nodes")
        yield
    finally:
        for group in groups:
            remove_placement_group(group)


def actor_options(placement: Placement | None, resources: dict[str, float]) -> dict:
    """Ray ``.options()`` that put an actor into its bundle and ask for its custom resources."""
    options: dict = {"resources": dict(resources)} if resources else {}
    if placement is not None:
        from ray.util import get_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            get_placement_group(group_name(placement.group)), placement_group_bundle_index=placement.bundle,
            placement_group_capture_child_tasks=True)
    return options
