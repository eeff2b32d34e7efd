"""Simulation configs: YAML validated by pydantic; errors name the field path, the value, what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from academe.agents.agent import AgentSpec
from academe.agents.backends.base import ModelSpec
from academe.agents.records import Record, Sampling

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


class ConfigError(ValueError):
    """A config that cannot run; the message says where and what to change."""


class RunSection(Record):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.\-]+$", description="run name; the run folder starts with it")
    seed: int = Field(0, ge=0, description="run seed: every episode's and turn's seed derives from it")
    episodes: int = Field(16, ge=1, le=10_000_000, description="episodes to run")
    concurrency: int = Field(16, ge=1, le=1_000_000, description="episodes in flight at once")
    out_dir: str = Field("runs", description="folder that receives run folders")


class ProtocolSection(Record):
    name: str = "socratic"
    options: dict[str, Any] = Field(default_factory=dict)


class TaskSection(Record):
    source: Literal["generated", "file", "hf"] = "generated"
    path: str | None = Field(None, description="file: a GSM8K-format .jsonl/.parquet; hf: a dataset name")
    split: str = "test"
    hf_config: str | None = "socratic"
    steps: int = Field(2, ge=1, le=20, description="generated: operations per problem")
    max_value: int = Field(20, ge=2, le=1_000_000, description="generated: size of the numbers")
    offset: int = Field(0, ge=0, description="skip this many tasks from the start of the source")
    seed: int | None = Field(None, ge=0, description="generated: problem seed (default: the run seed)")
    limit: int | None = Field(None, ge=1, description="use only this many tasks, cycled over the episodes")

    @model_validator(mode="after")
    def _path_when_needed(self):
        if self.source in ("file", "hf") and not self.path:
            raise ValueError(f"tasks.source {self.source!r} needs tasks.path")
        return self


class AgentSection(Record):
    role: str
    model: str
    persona: str = ""
    sampling: Sampling = Sampling()


class TrainSettings(Record):
    mode: Literal["lora", "full"] = "lora"
    lr: float = Field(5e-4, gt=0, le=1.0)
    batch_size: int = Field(8, ge=1, le=1024)
    steps: int = Field(20, ge=1, le=1_000_000, description="optimizer steps per training phase")
    max_seq_len: int = Field(512, ge=16, le=32_768)
    lora_r: int = Field(16, ge=1, le=1024)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    dpo_beta: float = Field(0.1, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    gradient_checkpointing: bool = Field(True, description="recompute activations in the backward pass: about "
                                         "half the memory (SmolLM2, batch 8 x 384 tokens: 5.6 GB instead of 10.6)")
    seed: int = 0


class TrainingSection(Record):
    """When and how one model is trained from the log (config ``training.<model name>``)."""

    role: str = Field(description="whose logged turns are the data (the protocol declares how)")
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
    settings: TrainSettings = TrainSettings()


class EvaluationSection(Record):
    """Held-out accuracy of one role, before training and after each phase (greedy, unaided)."""

    role: str = "student"
    count: int = Field(100, ge=1, le=100_000)
    tasks: "TaskSection" = Field(default_factory=lambda: TaskSection(seed=2**31 - 1),
                                 description="held-out problems; any that also appear in the run are dropped")


class RaySection(Record):
    enabled: bool = Field(True, description="false: everything in this process, for debugging")
    address: str | None = Field(None, description="None: start local Ray; 'auto' or ray://host:port for a cluster")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray instance (default: all)")


class SimulationConfig(Record):
    run: RunSection = RunSection()
    protocol: ProtocolSection = ProtocolSection()
    tasks: TaskSection = TaskSection()
    models: dict[str, ModelSpec]
    agents: dict[str, AgentSection]
    ray: RaySection = RaySection()
    training: dict[str, TrainingSection] = Field(default_factory=dict)
    evaluation: EvaluationSection | None = None

    @model_validator(mode="after")
    def _references_resolve(self):
        for name, section in self.training.items():
            if name not in self.models:
                raise ValueError(f"training.{name}: no model named {name!r}; models: {', '.join(self.models)}")
            if self.models[name].kind != "transformers":
                raise ValueError(f"training.{name}: model {name!r} is {self.models[name].kind!r} and cannot be "
                                 "trained; only transformers models can")
            if section.role not in {a.role for a in self.agents.values() if a.model == name}:
                raise ValueError(f"training.{name}.role: no agent of role {section.role!r} uses model {name!r}")
        for name, agent in self.agents.items():
            if agent.model not in self.models:
                raise ValueError(
                    f"agents.{name}.model is {agent.model!r}, but models defines only: {', '.join(self.models)}"
                )
        roles = [a.role for a in self.agents.values()]
        twice = sorted({r for r in roles if roles.count(r) > 1})
        if twice:
            raise ValueError(f"role(s) {', '.join(twice)} are bound to more than one agent")
        return self

    def agent_specs(self) -> dict[str, AgentSpec]:
        return {name: AgentSpec(name=name, **a.model_dump()) for name, a in self.agents.items()}


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
        raw = yaml.safe_load(source.read_text()) or {}
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


def describe(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the default config for the known keys)"
        value = error.get("input")
        shown = "" if isinstance(value, dict) or error["type"] == "missing" else f" (got {value!r})"
        lines.append(f"  {where}: {message}{shown}")
    return "\n".join(lines)


def dump_config(config: SimulationConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
