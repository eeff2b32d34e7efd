"""Simulation configs: YAML validated by pydantic; errors name the field path, the value, what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Discriminator, Field, Tag, ValidationError, model_validator

from academe.agents.agent import AgentSpec
from academe.agents.backends.base import BACKEND_KINDS, ModelSpec, Placement
from academe.agents.records import Record, Sampling
from academe.agents.redaction import redact, secrets_in

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


class ConfigError(ValueError):
    """A config that cannot run; the message says where and what to change."""


class RunSection(Record):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.\-]+$", description="run name; the run folder starts with it")
    seed: int = Field(0, ge=0, description="run seed: every episode's and turn's seed derives from it")
    episodes: int = Field(16, ge=1, le=10_000_000, description="episodes to run")
    concurrency: int = Field(16, ge=1, le=1_000_000, description="episodes in flight at once")
    out_dir: str = Field("runs", description="folder that receives run folders")
    shards: int = Field(1, ge=1, le=1024, description="runner actors that split the episodes (Ray only; "
                        "a protocol run without training)")


class ProtocolSection(Record):
    name: str = Field("socratic", description="a built-in protocol, or one of yours as 'package.module:name'")
    options: dict[str, Any] = Field(default_factory=dict)


class ProgramSection(Record):
    name: str = Field(description="a built-in round-level program, or one of yours as 'package.module:name'")
    options: dict[str, Any] = Field(default_factory=dict)


class TaskSection(Record):
    source: Literal["generated", "file", "hf", "mathdial"] = "generated"
    path: str | None = Field(None, description="file: a GSM8K-format .jsonl/.parquet; hf: a dataset name; "
                             "mathdial: a MathDial .jsonl (problems with the student's attempt and profile)")
    split: str = "test"
    hf_config: str | None = "socratic"
    steps: int = Field(2, ge=1, le=20, description="generated: operations per problem")
    max_value: int = Field(20, ge=2, le=1_000_000, description="generated: size of the numbers")
    offset: int = Field(0, ge=0, description="skip this many tasks from the start of the source")
    seed: int | None = Field(None, ge=0, description="generated: problem seed (default: the run seed)")
    limit: int | None = Field(None, ge=1, description="use only this many tasks (cycled over a protocol run's "
                              "episodes; a program's seed pool)")
    grader: str = Field("numeric", description="how replies are judged: numeric, exact, none (a judge scores "
                        "them), or a function 'package.module:function' of (reply text, task)")

    @model_validator(mode="after")
    def _path_when_needed(self):
        if self.source in ("file", "hf", "mathdial") and not self.path:
            raise ValueError(f"tasks.source {self.source!r} needs tasks.path")
        return self


class AgentSection(Record):
    """One agent; under ``agents.<key>`` its role defaults to the key. A list under a key is
    several agents of that role (seats in list order), named ``<key>-0``, ``<key>-1``... unless named."""

    role: str | None = None
    model: str
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.\-]+$", description="in a list: the agent's name")
    persona: str = ""
    sampling: Sampling = Sampling()


# One agent, or a list of agents of one role; errors point into the form that was given.
OneOrMoreAgents = Annotated[
    Union[Annotated[AgentSection, Tag("agent")], Annotated[list[AgentSection], Tag("agents")]],
    Discriminator(lambda value: "agents" if isinstance(value, list) else "agent"),
]


class TrainSettings(Record):
    mode: Literal["lora", "full"] = "lora"
    lr: float = Field(5e-4, gt=0, le=1.0)
    batch_size: int = Field(8, ge=1, le=1024)
    steps: int = Field(20, ge=1, le=1_000_000, description="optimizer steps per training phase")
    tokens: int | None = Field(None, ge=1, description="end a phase at the first step that brings it to this many "
                               "training tokens (prompts and targets; steps stays the cap): equal-token comparisons")
    max_seq_len: int = Field(512, ge=16, le=32_768)
    lora_r: int = Field(16, ge=1, le=1024)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    dpo_beta: float = Field(0.1, gt=0.0)
    dpo_nll: float = Field(0.0, ge=0.0, description="weight of the chosen reply's per-token NLL added to the DPO loss "
                           "(RPO): keeps the chosen replies likely, so a small model does not drift into rambling")
    weight_decay: float = Field(0.0, ge=0.0)
    gradient_checkpointing: bool = Field(True, description="recompute activations in the backward pass: about "
                                         "half the memory (SmolLM2, batch 8 x 384 tokens: 5.6 GB instead of 10.6)")
    seed: int = 0


class TrainingSection(Record):
    """When and how one model is trained from the log (config ``training.<model name>``)."""

    role: str | None = Field(None, description="protocol runs: whose logged turns are the data (the protocol "
                             "declares how); programs say themselves what each model learns")
    kind: Literal["sft", "preference", "distill"] | None = Field(None, description="which declaration, if several")
    every_episodes: int = Field(16, ge=1, description="train after every K finished episodes")
    wait: bool = Field(True, description="pause the simulation while training; false: train in the background")
    max_staleness: int | None = Field(None, ge=0, description="background: use turns at most N versions old")
    publish: Literal["adapter", "full"] = Field("adapter", description="send the LoRA adapter, or full weights")
    publish_timeout_s: float = Field(120.0, gt=0)
    min_examples: int = Field(1, ge=1, description="skip a phase with fewer examples than this")
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    threads: int | None = Field(None, ge=1, description="torch threads of the trainer (default: num_cpus)")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources the trainer needs")
    placement: Placement | None = Field(None, description="a bundle of a placement group: the same bundle as its "
                                        "model's to share its GPUs, another to keep them apart")
    settings: TrainSettings = TrainSettings()


class HeldOutSet(Record):
    """Another held-out set, measured at the same points as the main one."""

    count: int = Field(100, ge=1, le=100_000)
    tasks: "TaskSection"


class EvaluationSection(Record):
    """Held-out accuracy of one role, before training and after each phase (greedy, unaided)."""

    role: str | None = Field(None, description="protocol runs: whose accuracy (default: student); programs "
                             "name the role in their Evaluate actions")
    count: int = Field(100, ge=1, le=100_000)
    tasks: "TaskSection" = Field(default_factory=lambda: TaskSection(seed=2**31 - 1),
                                 description="held-out problems; any that also appear in the run are dropped")
    also: dict[str, HeldOutSet] = Field(default_factory=dict, description="more held-out sets by name (e.g. harder "
                                        "problems than the run's), measured whenever the main one is")

    @property
    def learner(self) -> str:
        return self.role or "student"


class RaySection(Record):
    enabled: bool = Field(True, description="false: everything in this process, for debugging")
    address: str | None = Field(None, description="None: start local Ray; 'auto' or ray://host:port for a cluster")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray instance (default: all)")
    runtime_env: dict[str, Any] | None = Field(None, description="Ray runtime environment of every actor, e.g. "
                                               "{pip: [academe==0.2.0]} where workers lack academe")
    dashboard: bool = Field(False, description="start the local Ray's dashboard, on 127.0.0.1 only")


class PlacementGroupSection(Record):
    """Bundles of resources reserved together; models and trainers name a bundle to run in it."""

    bundles: list[dict[str, float]] = Field(min_length=1, description="e.g. [{GPU: 1, CPU: 4}]")
    strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"


class SimulationConfig(Record):
    run: RunSection = RunSection()
    protocol: ProtocolSection | None = Field(None, description="an episode protocol to run (default: socratic)")
    program: ProgramSection | None = Field(None, description="or a round-level program (not both)")
    tasks: TaskSection = TaskSection()
    models: dict[str, ModelSpec]
    placement: dict[str, PlacementGroupSection] = Field(default_factory=dict)
    agents: dict[str, OneOrMoreAgents]
    ray: RaySection = RaySection()
    training: dict[str, TrainingSection] = Field(default_factory=dict)
    evaluation: EvaluationSection | None = None

    @model_validator(mode="after")
    def _references_resolve(self):
        if self.protocol is not None and self.program is not None:
            raise ValueError("give a protocol or a program, not both")
        if self.protocol is None and self.program is None:
            object.__setattr__(self, "protocol", ProtocolSection())
        specs = self.agent_specs()
        if len(specs) < sum(len(a) if isinstance(a, list) else 1 for a in self.agents.values()):
            raise ValueError("two agents have the same name; name each agent once")
        for where, agent in self._agent_sections():
            if agent.model not in self.models:
                raise ValueError(f"{where}.model is {agent.model!r}, but models defines only: {', '.join(self.models)}")
        for name, section in self.training.items():
            if name not in self.models:
                raise ValueError(f"training.{name}: no model named {name!r}; models: {', '.join(self.models)}")
            if not self.models[name].backend.trainable:
                trainable = ", ".join(k.name for k in BACKEND_KINDS.values() if k.trainable)
                raise ValueError(f"training.{name}: model {name!r} is {self.models[name].kind!r} and cannot be "
                                 f"trained; models of kind {trainable} can")
            if getattr(self.models[name].settings(), "weight_sync", None) == "nccl" and not (
                    self.models[name].num_gpus and section.num_gpus and self.ray.enabled):
                raise ValueError(f"training.{name}: model {name!r} takes weights over NCCL (options.weight_sync), "
                                 "so it and its trainer need GPUs (num_gpus > 0 on both) and Ray")
            if self.protocol is not None and section.role is None:
                raise ValueError(f"training.{name}.role: say whose logged turns train model {name!r}")
            if section.role is not None and section.role not in {a.role for a in specs.values() if a.model == name}:
                raise ValueError(f"training.{name}.role: no agent of role {section.role!r} uses model {name!r}")
        for name, spec in self.models.items():
            if spec.backend.hosted:
                self._check_host(name, spec)
        placed = [(f"models.{n}", m.placement) for n, m in self.models.items()] + [
            (f"training.{n}", t.placement) for n, t in self.training.items()]
        for where, placement in placed:
            group = self.placement.get(placement.group) if placement else None
            if placement and group is None:
                raise ValueError(f"{where}.placement.group: no placement group {placement.group!r}; "
                                 f"placement defines: {', '.join(self.placement) or 'none'}")
            if placement and placement.bundle >= len(group.bundles):
                raise ValueError(f"{where}.placement.bundle: group {placement.group!r} has {len(group.bundles)} "
                                 f"bundle(s), so bundle {placement.bundle} does not exist")
        if self.run.shards > 1:
            where = ("ray.enabled is false" if not self.ray.enabled else "it is a program" if self.program
                     else "it trains models" if self.training else None)
            if where:
                raise ValueError(f"run.shards: {self.run.shards} runner shards need Ray and a protocol run "
                                 f"without training, but {where}; use run.shards: 1")
        if found := secrets_in(self.model_dump(mode="json")):
            raise ValueError(f"{'; '.join(found)}: a config is copied into its run folder, so it names where a "
                             "secret is (an environment variable), never the secret itself")
        return self

    def _agent_sections(self):
        for key, entry in self.agents.items():
            if isinstance(entry, list):
                yield from ((f"agents.{key}.{i}", a) for i, a in enumerate(entry))
            else:
                yield f"agents.{key}", entry

    def _check_host(self, name: str, spec: ModelSpec) -> None:
        """A hosted model (an adapter) names a model whose engine serves adapters, with room for it."""
        host = self.models.get(spec.path)
        slots = getattr(host.settings(), "max_loras", 0) if host is not None and not host.backend.hosted else 0
        if not slots:
            raise ValueError(f"models.{name}.path: a model of kind {spec.kind!r} names the model whose engine serves "
                             f"it, one of kind vllm with options.max_loras > 0; {spec.path!r} is not one")
        guests = [n for n, m in self.models.items() if m.backend.hosted and m.path == spec.path]
        if len(guests) > slots:
            raise ValueError(f"models.{spec.path}.options.max_loras: {slots}, but {len(guests)} adapter models "
                             f"are served by it ({', '.join(guests)})")
        training = self.training.get(name)
        if training is not None and (training.settings.mode != "lora" or training.publish != "adapter"):
            raise ValueError(f"training.{name}: model {name!r} is an adapter on {spec.path!r}'s engine, so its trainer "
                             "trains and publishes a LoRA adapter (settings.mode: lora, publish: adapter)")

    def trained_spec(self, model: str) -> ModelSpec:
        """The spec a trainer of ``model`` loads: its host's, for an adapter served by another model."""
        spec = self.models[model]
        return self.models[spec.path] if spec.backend.hosted else spec

    def agent_specs(self) -> dict[str, AgentSpec]:
        """Every agent by name, in config order (the order of seats within a role)."""
        specs = {}
        for key, entry in self.agents.items():
            for i, a in enumerate(entry if isinstance(entry, list) else [entry]):
                name = a.name or (f"{key}-{i}" if isinstance(entry, list) else key)
                fields = a.model_dump(exclude={"name", "role"})
                specs[name] = AgentSpec(name=name, role=a.role or key, **fields)
        return specs

    def cast(self) -> dict[str, tuple[AgentSpec, ...]]:
        """Role -> the agents playing it, in seat order."""
        cast: dict[str, tuple[AgentSpec, ...]] = {}
        for agent in self.agent_specs().values():
            cast[agent.role] = cast.get(agent.role, ()) + (agent,)
        return cast


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """``key.sub=value`` edits (value parsed as YAML), as given on the command line with ``--set``."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SimulationConfig:
    source = Path(path) if path else DEFAULT_CONFIG
    if not source.is_file():
        raise ConfigError(f"config file {str(source)!r} does not exist")
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not a UTF-8 text file (byte {exc.start}): a config is YAML text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(raw).__name__}")
    return parse_config(apply_overrides(raw, overrides or []), str(source))


def parse_config(raw: dict, source: str = "config") -> SimulationConfig:
    try:
        return SimulationConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe(exc, source)) from None


def describe(exc: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem: the field's path (under ``prefix``), what is wrong, and the value given."""
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    for error in exc.errors():
        loc = ([prefix] if prefix else []) + list(error["loc"])
        if not prefix and loc[:1] == ["agents"] and len(loc) > 2 and loc[2] in ("agent", "agents"):
            del loc[2]  # the tag of the form given (one agent or a list), not a key the user wrote
        where = ".".join(str(p) for p in loc) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the default config for the known keys)"
        value = error.get("input")
        shown = "" if isinstance(value, dict) or error["type"] == "missing" else f" (got {value!r})"
        lines.append(f"  {where}: {message}{shown}")
    return redact("\n".join(lines))


def dump_config(config: SimulationConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
