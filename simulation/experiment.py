"""Experiments: arms x seeds of one run config, with equal compute checked and intervals reported.

An experiment file names a base run config, overrides shared by every arm, the arms (each the
base, or another config, with its own overrides: the treatment), the seeds, the metric and the
budget that must be equal across arms. Every arm x seed is one run folder under the experiment's
folder; a run that finished is not run again, one that was cut short is resumed, so a killed
experiment continues where it stopped. Arms of one seed differ only by their treatment: the seed
(``run.seed``) is set the same way in every arm, and the held-out set comes from the shared config.

The results: ``results.json`` (every run's metric and budget), ``results.md`` (per arm: mean, a
95% bootstrap interval of the mean over seeds, the per-seed values, the budget; a table more for
each further held-out set of ``evaluation.also``), ``results.png`` (means with their intervals)
and ``report.md`` (the command, the tables, the budget check).
"""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from academe.agents.records import Record
from academe.simulation.config import ConfigError, SimulationConfig, describe, load_config

BUDGETS = ("training_steps", "training_tokens")


METRIC = r"^(held_out_accuracy|solve_rate|result(\.[A-Za-z0-9_\-]+)+)$"


class Arm(Record):
    config: str | None = Field(None, description="a run config of its own (default: the experiment's base)")
    set: list[str] = Field(default_factory=list, description="overrides, key.path=value, as with --set")
    metric: str | None = Field(None, pattern=METRIC, description="this arm's own metric (default: the experiment's)")
    same_run_as: str | None = Field(None, description="no run of its own: this arm's metric is read from that arm's "
                                    "runs (two ways of deciding from the same data, e.g. LbT's M1 and majority vote)")


class Experiment(Record):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    base: str = Field(description="the run config every arm starts from (relative to this file)")
    set: list[str] = Field(default_factory=list, description="overrides every arm gets")
    arms: dict[str, Arm] = Field(min_length=2)
    seeds: list[int] = Field(min_length=3, description="at least 3: an interval needs spread to mean anything")
    metric: str = Field("held_out_accuracy", pattern=METRIC, description="held_out_accuracy (the last evaluation), "
                        "solve_rate, or result.PATH: a number in a program's summary, e.g. result.rounds.-1.majority")
    equal: list[Literal["training_steps", "training_tokens"]] = Field(
        default_factory=lambda: ["training_steps"], description="budgets every arm of a seed must spend alike")
    tolerance: float = Field(0.0, ge=0, lt=1, description="relative spread allowed in an equal budget (a token "
                             "budget is reached within a step, so arms overshoot it by part of a batch)")
    control: str | None = Field(None, description="the arm every other is compared with seed by seed: the "
                                "paired difference, its bootstrap interval, and what the interval shows")

    @field_validator("arms")
    @classmethod
    def _arm_names(cls, arms: dict) -> dict:
        for name in arms:
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"arm name {name!r}: letters, digits, - and _ only (it names run folders)")
        for name, arm in arms.items():
            if arm.same_run_as is None:
                continue
            earlier = list(arms)[:list(arms).index(name)]
            if arm.same_run_as not in earlier or arms[arm.same_run_as].same_run_as is not None:
                raise ValueError(f"arm {name!r}: same_run_as {arm.same_run_as!r} must name an arm before it that has "
                                 "runs of its own")
            if arm.config or arm.set:
                raise ValueError(f"arm {name!r}: an arm with same_run_as has no run of its own: no config or set")
        return arms

    @model_validator(mode="after")
    def _control_is_an_arm(self) -> "Experiment":
        if self.control is not None and self.control not in self.arms:
            raise ValueError(f"control {self.control!r} is not an arm (arms: {', '.join(self.arms)})")
        return self


# what a changed experiment may change and keep its runs: what is reported (control, metric, budget
# check) and which seeds (a seed's runs depend on that seed only: a new one adds runs, the others stay)
KEEPS_RUNS = {"control": True, "metric": True, "equal": True, "tolerance": True, "seeds": True,
              "arms": {"__all__": {"metric"}}}


def load_experiment(path: str | Path) -> tuple[Experiment, Path]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Experiment.model_validate(raw), path.parent
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(describe(exc, str(path))) from None


def arm_config(experiment: Experiment, folder: Path, arm: str, seed: int, runs: Path) -> SimulationConfig:
    """The run config of one arm and seed: its config file, the shared then its own overrides,
    then the seed and the experiment's run folder."""
    spec = experiment.arms[arm]
    overrides = [*experiment.set, *spec.set, f"run.seed={seed}", f"run.name={arm}-s{seed}", f"run.out_dir={runs}"]
    return load_config(folder / (spec.config or experiment.base), overrides)


def same_runs(kept: Path, experiment: Experiment) -> bool:
    """Whether the experiment first run from ``kept`` asks for the same runs of each seed (it may
    report them differently, e.g. against another control, or have other seeds)."""
    try:
        first = Experiment.model_validate(yaml.safe_load(kept.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError):
        return False
    return first.model_dump(exclude=KEEPS_RUNS) == experiment.model_dump(exclude=KEEPS_RUNS)


def run_folder(runs: Path, arm: str, seed: int) -> Path | None:
    """The run folder of an arm and seed from an earlier session, if there is one."""
    found = sorted(runs.glob(f"{arm}-s{seed}-*")) if runs.is_dir() else []
    return found[-1] if found else None


def run_experiment(path: str | Path, out_dir: str | Path, on_run=None) -> dict:
    """Run (or continue) every arm x seed, then write the results; returns them."""
    from academe.simulation.simulate import plan, resume_run, start_run

    experiment, folder = load_experiment(path)
    root = Path(out_dir) / experiment.name
    runs = root / "runs"
    running = [arm for arm, spec in experiment.arms.items() if spec.same_run_as is None]
    for arm in running:  # every arm's config and options must hold before anything runs
        for seed in experiment.seeds:
            try:
                plan(arm_config(experiment, folder, arm, seed, runs))
            except ConfigError as exc:
                raise ConfigError(f"{path}: arm {arm!r}, seed {seed}: {exc}") from None
    root.mkdir(parents=True, exist_ok=True)
    kept, given = root / "experiment.yaml", Path(path).read_text(encoding="utf-8")
    if kept.is_file() and kept.read_text(encoding="utf-8") != given and not same_runs(kept, experiment):
        raise ConfigError(f"{root} holds experiment {experiment.name!r} as first run, and {path} differs from it "
                          f"({kept}): its runs would not be comparable; name the changed experiment differently")
    kept.write_text(given)
    results = []
    for seed in experiment.seeds:
        summaries = {}
        for arm in running:
            existing = run_folder(runs, arm, seed)
            if on_run is not None:
                on_run(arm, seed, "done" if existing and (existing / "summary.json").exists()
                       else "resuming" if existing else "starting")
            if existing is not None:
                summary = resume_run(existing)
            else:
                existing, summary = start_run(arm_config(experiment, folder, arm, seed, runs))
            summaries[arm] = (existing, summary)
        for arm, spec in experiment.arms.items():
            existing, summary = summaries[spec.same_run_as or arm]
            results.append({"arm": arm, "seed": seed, "run": str(existing.relative_to(root)),
                            "metric": metric_of(summary, spec.metric or experiment.metric), "also": also_of(summary),
                            "wall_s": summary.get("wall_s") if spec.same_run_as is None else 0.0,
                            **budget_of(summary)})
    report = summarize_experiment(experiment, results, str(path))
    write_results(root, experiment, results, report)
    return report


def metric_of(summary: dict, metric: str) -> float | None:
    """The run's final held-out accuracy (the last evaluation), its episodes' solve rate, or a number
    at a path in a program's result (None where the run recorded none there, e.g. no evaluation);
    a path that names nothing in the result is a ConfigError: a typo must not report as '-'."""
    if metric == "solve_rate":
        return summary.get("solve_rate")
    if metric.startswith("result."):
        value, walked = summary.get("result"), "result"
        if value is None:
            raise ConfigError(f"metric {metric!r}: this run has no result to read it from (a program's runs have one)")
        for key in metric.split(".")[1:]:
            if isinstance(value, list) and key.lstrip("-").isdigit() and -len(value) <= int(key) < len(value):
                value = value[int(key)]
            elif isinstance(value, dict) and key in value:
                value = value[key]
            else:
                has = (f"keys {', '.join(map(str, value))}" if isinstance(value, dict) else
                       f"{len(value)} items" if isinstance(value, list) else f"the value {value!r}")
                raise ConfigError(f"metric {metric!r}: {walked} has no {key!r} in this run's summary "
                                  f"(it has {has})")
            walked += f".{key}"
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise ConfigError(f"metric {metric!r} names {type(value).__name__}, not a number, in this run's summary")
        return value
    if summary.get("evaluated"):  # a program: evaluations by round
        return summary["evaluated"][-1]["accuracy"]
    for training in summary.get("training", []):  # a protocol run with training phases
        if training["accuracy"]:
            return training["accuracy"][-1][1]
    return None


def also_of(summary: dict) -> dict[str, float | None]:
    """The final accuracy on each further held-out set (``evaluation.also``)."""
    entries = [e for e in summary.get("evaluated") or [] if e.get("also")] + [
        p for training in summary.get("training", []) for p in training["phases"] if p.get("also")]
    return entries[-1]["also"] if entries else {}


def budget_of(summary: dict) -> dict[str, int]:
    """Optimizer steps and training tokens the run spent, over every trained phase."""
    phases = [t for t in summary.get("trained", []) if not t.get("skipped")] + [
        p for training in summary.get("training", []) for p in training["phases"] if p["event"] == "trained"]
    return {"training_steps": sum(p.get("steps", 0) for p in phases),
            "training_tokens": sum(p.get("tokens", 0) for p in phases)}


def bootstrap_interval(values: list[float], draws: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """A 95% percentile bootstrap interval of the mean (resampling the seeds)."""
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(draws))
    return means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def spread(per_seed: dict) -> dict:
    """Mean, standard error and bootstrap interval of an arm's per-seed values."""
    values = [v for v in per_seed.values() if v is not None]
    return {"per_seed": per_seed, "mean": statistics.fmean(values) if values else None,
            "stderr": statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None,
            "interval": bootstrap_interval(values) if values else None}


def unequal_budgets(experiment: Experiment, results: list[dict]) -> list[str]:
    """Seeds whose arms spent an equal budget differently (beyond the tolerance), as lines."""
    unequal = []
    for seed in experiment.seeds:
        mine = [r for r in results if r["seed"] == seed]
        for b in experiment.equal:
            spent = [r[b] for r in mine]
            if spent and max(spent) - min(spent) > experiment.tolerance * max(spent):
                unequal.append(f"seed {seed}: {b} " + ", ".join(f"{r['arm']} {r[b]}" for r in mine))
    return unequal


def summarize_experiment(experiment: Experiment, results: list[dict], command_path: str) -> dict:
    arms = {}
    for arm in experiment.arms:
        mine = [r for r in results if r["arm"] == arm]
        also = sorted({name for r in mine for name in r.get("also", {})})
        arms[arm] = {**spread({r["seed"]: r["metric"] for r in mine}), **{b: [r[b] for r in mine] for b in BUDGETS},
                     "also": {name: spread({r["seed"]: r.get("also", {}).get(name) for r in mine}) for name in also}}
    report = {"experiment": experiment.name, "metric": experiment.metric, "seeds": experiment.seeds,
              "command": f"academe experiment {command_path}", "arms": arms, "control": experiment.control,
              "unequal_budget": unequal_budgets(experiment, results), "runs": results}
    report["differences"] = differences(report) if experiment.control else {}
    return report


def differences(report: dict) -> dict[str, dict[str, dict]]:
    """Per shown metric, each arm less the control, seed by seed (seeds where either is missing
    are left out), with the interval's verdict: higher, lower, or no difference shown."""
    control, out = report["control"], {}
    for metric, by_arm in panels(report).items():
        base = by_arm.get(control, {}).get("per_seed", {})
        out[metric] = {}
        for arm, a in by_arm.items():
            if arm == control:
                continue
            paired = {seed: v - base[seed] for seed, v in a["per_seed"].items()
                      if v is not None and base.get(seed) is not None}
            d = spread(paired)
            low, high = d["interval"] or (0.0, 0.0)
            d["shows"] = "higher" if low > 0 else "lower" if high < 0 else "no difference shown"
            out[metric][arm] = d
    return out


def panels(report: dict) -> dict[str, dict[str, dict]]:
    """What the tables and the plot show: the metric, then each further held-out set, by arm."""
    shown = {report["metric"]: report["arms"]}
    for name in sorted({n for a in report["arms"].values() for n in a.get("also", {})}):
        shown[f"held_out_accuracy ({name})"] = {arm: a["also"][name] for arm, a in report["arms"].items()
                                                if name in a.get("also", {})}
    return shown


def write_results(root: Path, experiment: Experiment, results: list[dict], report: dict) -> None:
    (root / "results.json").write_text(json.dumps(report, indent=2))
    tables = []
    for metric, arms in panels(report).items():
        lines = [f"| arm | mean {metric} | 95% interval (bootstrap over seeds) | std. error | per seed "
                 f"({', '.join(map(str, experiment.seeds))}) | training steps | training tokens |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        for arm, a in arms.items():
            interval = f"{a['interval'][0]:.3f} - {a['interval'][1]:.3f}" if a["interval"] else "-"
            budget = report["arms"][arm]
            own = experiment.arms[arm].metric
            lines.append(f"| {arm}{f' ({own})' if own else ''} | {_num(a['mean'])} | {interval} | {_num(a['stderr'])} | "
                         f"{', '.join(_num(v) for v in a['per_seed'].values())} | "
                         f"{', '.join(map(str, budget['training_steps']))} | "
                         f"{', '.join(map(str, budget['training_tokens']))} |")
        tables.append("\n".join(lines) + "\n")
        if report.get("differences", {}).get(metric):
            tables.append(difference_table(metric, report["control"], report["differences"][metric], experiment.seeds))
    (root / "results.md").write_text("\n".join(tables))
    budget = ("equal across arms for every seed (" + ", ".join(experiment.equal) +
              (f", within {experiment.tolerance:.0%}" if experiment.tolerance else "") + ")"
              if not report["unequal_budget"] else "NOT equal: " + "; ".join(report["unequal_budget"]))
    (root / "report.md").write_text(
        f"# Experiment {experiment.name}\n\n`{report['command']}`\n\n{len(experiment.arms)} arms x "
        f"{len(experiment.seeds)} seeds; metric: {experiment.metric}.\n\n" + "\n".join(tables) +
        f"\nBudget: {budget}.\n\nRun time: {run_time(results)}.\n")
    plot_results(root / "results.png", experiment, report)


def run_time(results: list[dict]) -> str:
    """The runs' wall-clock time added up (a resumed run counts its last session only)."""
    seconds = sum(r.get("wall_s") or 0.0 for r in results)
    return f"{seconds / 60:.1f} minutes over {sum(1 for r in results if r.get('wall_s'))} runs"


def difference_table(metric: str, control: str, by_arm: dict, seeds: list[int]) -> str:
    lines = [f"| {metric}: arm - {control} | mean difference | 95% interval (bootstrap over seeds) | per seed "
             f"({', '.join(map(str, seeds))}) | the interval shows |", "| --- | --- | --- | --- | --- |"]
    for arm, d in by_arm.items():
        interval = f"{d['interval'][0]:+.3f} - {d['interval'][1]:+.3f}" if d["interval"] else "-"
        lines.append(f"| {arm} | {_num(d['mean'], '+')} | {interval} | "
                     f"{', '.join(_num(v, '+') for v in d['per_seed'].values())} | {d['shows']} |")
    return "\n".join(lines) + "\n"


def plot_results(path: Path, experiment: Experiment, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = panels(report)
    width = max(5.0, 1.6 * len(report["arms"]) + 2)
    fig, axes = plt.subplots(1, len(shown), figsize=(width * len(shown), 3.4), squeeze=False)
    for ax, (metric, by_arm) in zip(axes[0], shown.items()):
        arms = [a for a in by_arm if by_arm[a]["mean"] is not None]
        for i, arm in enumerate(arms):
            a = by_arm[arm]
            low, high = a["interval"]
            ax.errorbar(i, a["mean"], yerr=[[a["mean"] - low], [high - a["mean"]]], fmt="o", capsize=6)
            ax.scatter([i + 0.12] * len(a["per_seed"]), [v for v in a["per_seed"].values() if v is not None],
                       s=12, alpha=0.5)
        own = {a: s.metric for a, s in experiment.arms.items() if s.metric} if metric == report["metric"] else {}
        ax.set_xticks(range(len(arms)), [f"{a}\n{own[a]}" if a in own else a for a in arms], fontsize=8)
        ax.set_ylabel("each arm's own metric (under its name)" if own else metric)
    fig.suptitle(f"{experiment.name}: mean and 95% bootstrap interval over {len(experiment.seeds)} seeds",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _num(value, sign: str = "") -> str:
    return "-" if value is None else f"{round(value, 3) + 0.0:{sign}.3f}"  # + 0.0: no "-0.000"
