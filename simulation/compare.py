"""Two runs side by side: ``academe compare RUN_A RUN_B``.

Episodes are paired by parent when one run is a fork of the other (each forked episode with the
episode it came from), otherwise by task id. Both sides are summarised over the paired episodes
only (solve rate, success@k, telling@k, turns, scores), so the figures answer "what changed on
the same problems", and every pair whose outcome differs is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from academe.protocols.engine import Outcome
from academe.simulation.lineage import read_lineage
from academe.simulation.replay import EpisodeView, load_views
from academe.simulation.summary import outcome_summary


@dataclass
class Pair:
    task: str
    a: EpisodeView
    b: EpisodeView

    @property
    def changed(self) -> bool:
        return self.a.status != self.b.status or (self.a.outcome or {}).get("score") != (self.b.outcome or {}).get("score")


def pairs_of(run_a: Path, run_b: Path) -> tuple[str, list[Pair]]:
    """How the runs' episodes pair up ("parent" or "task"), and the pairs of finished episodes."""
    views_a = {v.episode: v for v in load_views(run_a) if v.outcome is not None}
    views_b = {v.episode: v for v in load_views(run_b) if v.outcome is not None}
    for child, parent, flip in ((run_b, run_a, False), (run_a, run_b, True)):
        lineage = read_lineage(child)
        if lineage is not None and lineage.kind == "fork" and Path(lineage.source).resolve() == parent.resolve():
            kids, parents = (views_a, views_b) if flip else (views_b, views_a)
            pairs = [(parents[o.episode], kids[e]) for e, o in lineage.episodes.items()
                     if e in kids and o.episode in parents]
            return "parent", [Pair(str(p.task["id"]), *((k, p) if flip else (p, k))) for p, k in pairs]
    by_task_b: dict[str, EpisodeView] = {}
    for view in views_b.values():
        by_task_b.setdefault(str(view.task["id"]), view)
    seen, pairs = set(), []
    for view in views_a.values():
        task = str(view.task["id"])
        if task in by_task_b and task not in seen:
            seen.add(task)
            pairs.append(Pair(task, view, by_task_b[task]))
    return "task", pairs


def side(views: list[EpisodeView]) -> dict:
    summary = outcome_summary([Outcome.model_validate(v.outcome) for v in views])
    summary["mean turns"] = sum(len(v.turns) for v in views) / len(views)
    return summary


def compare_runs(run_a: str | Path, run_b: str | Path) -> dict:
    run_a, run_b = Path(run_a), Path(run_b)
    by, pairs = pairs_of(run_a, run_b)
    if not pairs:
        raise ValueError(f"{run_a} and {run_b} share no finished episode: neither is a fork of the other and "
                         "they have no task in common")
    return {"a": str(run_a), "b": str(run_b), "paired_by": by, "pairs": len(pairs),
            "summary_a": side([p.a for p in pairs]), "summary_b": side([p.b for p in pairs]),
            "transitions": transitions(pairs),
            "changed": [{"task": p.task, "episode_a": p.a.episode, "episode_b": p.b.episode, "a": p.a.status,
                         "b": p.b.status, "score_a": p.a.outcome.get("score"), "score_b": p.b.outcome.get("score"),
                         "turns_a": len(p.a.turns), "turns_b": len(p.b.turns)} for p in pairs if p.changed]}


def transitions(pairs: list[Pair]) -> dict[str, int]:
    """How many pairs went from each outcome in A to each in B (e.g. "unsolved -> solved")."""
    counts: dict[str, int] = {}
    for p in pairs:
        key = f"{p.a.status} -> {p.b.status}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def metric_rows(result: dict) -> list[tuple[str, str, str]]:
    """(metric, A, B) rows for a table: solve rate, mean score, each @k point, mean metrics."""
    a, b = result["summary_a"], result["summary_b"]

    def share(x):
        return "-" if x is None else f"{x:.1%}"

    rows = [("episodes", str(a["episodes"]), str(b["episodes"])),
            ("solved", f"{a['solved']} ({share(a['solve_rate'])})", f"{b['solved']} ({share(b['solve_rate'])})")]
    if a["mean_score"] is not None or b["mean_score"] is not None:
        rows.append(("mean score", *(f"{s['mean_score']:.3f}" if s["mean_score"] is not None else "-" for s in (a, b))))
    for curve in sorted(set(a["at_k"]) | set(b["at_k"])):
        ks = sorted(set(a["at_k"].get(curve, {})) | set(b["at_k"].get(curve, {})), key=int)
        rows.extend((f"{curve} k={k}", share(at(a, curve, k)), share(at(b, curve, k))) for k in ks)
    for name in sorted(set(a["metrics"]) | set(b["metrics"])):
        rows.append((f"mean {name}", *(f"{s['metrics'].get(name, 0):.2f}" for s in (a, b))))
    rows.append(("mean turns", f"{a['mean turns']:.2f}", f"{b['mean turns']:.2f}"))
    return rows


def at(summary: dict, curve: str, k: str) -> float:
    """A point of an @k curve; past a run's longest episode the curve stays at its last value."""
    points = summary["at_k"].get(curve, {})
    if k in points:
        return points[k]
    return points[max(points, key=int)] if points else 0.0


def plot_comparison(result: dict, path: Path) -> Path:
    """The @k curves of both runs, and where each pair's outcome went."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, moves) = plt.subplots(1, 2, figsize=(11, 4))
    names = {"a": "A " + Path(result["a"]).name, "b": "B " + Path(result["b"]).name}
    a, b = result["summary_a"], result["summary_b"]
    for color, curve in zip(("#4a7bb7", "#d9822b", "#5aa55a", "#9b59b6"), sorted(set(a["at_k"]) | set(b["at_k"]))):
        ks = sorted(set(a["at_k"].get(curve, {})) | set(b["at_k"].get(curve, {})), key=int)
        for key, style in (("a", "-o"), ("b", "--s")):
            curves.plot([int(k) for k in ks], [at(result[f"summary_{key}"], curve, k) for k in ks], style, color=color,
                        label=f"{curve}: {names[key]}")
    curves.xaxis.get_major_locator().set_params(integer=True)
    curves.set_xlabel("k (turns)")
    curves.set_ylabel("share of paired episodes")
    curves.set_ylim(0, 1)
    curves.legend(fontsize=7)
    curves.set_title(f"{result['pairs']} episodes paired by {result['paired_by']}")
    labels = list(result["transitions"])
    moves.barh(labels, [result["transitions"][k] for k in labels], color="#4a7bb7")
    moves.set_xlabel("pairs")
    moves.set_title("outcome in A -> outcome in B")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def turn_pairs(fork_dir: str | Path) -> list[dict]:
    """For a fork: each live turn beside what the parent said at the same step (e.g. a model
    teacher's turn beside the human teacher's), with the prompt both were given."""
    rows = []
    for view in load_views(fork_dir):
        parent = {(t.step, t.role, t.seat): t for t in view.parent_turns}
        for turn in (t for t in view.turns if not t.inherited):
            before = parent.get((turn.step, turn.role, turn.seat))
            if before is None:
                continue
            rows.append({"task": view.task["id"], "episode": view.episode, "parent_run": view.parent["run"],
                         "parent_episode": view.parent["episode"], "step": turn.step, "role": turn.role,
                         "parent": side_of(before), "fork": side_of(turn)})
    return rows


def side_of(turn) -> dict:
    return {"agent": turn.agent, "model": turn.model, "model_version": turn.model_version, "move": turn.move,
            "text": turn.text}
