"""What a finished run reports. A protocol run: solve rate, scores, metrics and @k curves of its
episodes. A program: its own summary, its episodes per protocol, every training phase and
evaluation by round, and the learning curve."""

from __future__ import annotations

from pathlib import Path

from academe.protocols.engine import Outcome
from academe.protocols.program import Evaluated, Program, Stop, Trained
from academe.simulation.log import read_steps
from academe.simulation.runner import Progress


def summarize(outcomes: dict[int, Outcome], progress: Progress) -> dict:
    """The outcomes' summary (``outcome_summary``) and the messages and tokens of this session."""
    return outcome_summary(list(outcomes.values())) | {
        "messages_this_session": progress.messages,
        "completion_tokens_this_session": progress.completion_tokens,
        "messages_per_s": round(progress.messages / progress.elapsed, 2) if progress.elapsed else 0.0,
    }


def outcome_summary(values: list[Outcome]) -> dict:
    """Solve rate (of the episodes a reference could judge), mean score (of the scored ones), mean
    metrics, and for each ``*_at`` metric its ``@k`` curve (e.g. success@k: share of episodes with
    success_at <= k)."""
    n = len(values)
    judged = [o.solved for o in values if o.solved is not None]
    scores = [o.score for o in values if o.score is not None]
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
        "judged": len(judged),
        "solved": sum(judged),
        "solve_rate": sum(judged) / len(judged) if judged else None,
        "mean_score": sum(scores) / len(scores) if scores else None,
        "metrics": {m: sum(o.metrics.get(m, 0.0) for o in values) / n for m in metric_names
                    if not m.endswith("_at")},
        "at_k": at_curves,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def summarize_program(program: Program, stop: Stop, decisions: list, results: dict, run_dir: Path,
                      messages: int, completion_tokens: int) -> dict:
    outcomes: dict[str, dict] = {}
    for record in read_steps(run_dir):
        if record.outcome is not None:
            outcomes.setdefault(record.protocol, {})[record.episode] = record.outcome
    trained, evaluated = [], []
    for decision in decisions:
        if decision.n not in results or decision.kind not in ("train", "evaluate"):
            continue
        record = results[decision.n]
        entry = (Trained if decision.kind == "train" else Evaluated).model_validate(record.result).model_dump(mode="json")
        (trained if decision.kind == "train" else evaluated).append({"round": decision.round, **entry,
                                                                      "seconds": record.seconds})
    summary = {
        "program": program.name,
        "rounds": stop.state.round,
        "decisions": len(decisions),
        "result": stop.summary,
        "episodes": {name: {k: v for k, v in summarize(o, Progress(total=0)).items()
                            if k in ("episodes", "judged", "solved", "solve_rate", "mean_score", "metrics", "errors")}
                     for name, o in outcomes.items()},
        "trained": trained,
        "evaluated": evaluated,
        "training_s": round(sum(t["seconds"] for t in trained), 2),
        "messages_this_session": messages,
        "completion_tokens_this_session": completion_tokens,
    }
    if trained or any(e["accuracy"] is not None for e in evaluated):
        from academe.trainers.plot import plot_training

        summary["learning_curve"] = str(plot_training(as_training_summaries(trained, evaluated),
                                                      run_dir / "learning_curve.png"))
    return summary


def as_training_summaries(trained: list[dict], evaluated: list[dict]) -> list[dict]:
    """Per model: held-out accuracy by version and the loss of each phase (what the plot reads)."""
    models = list(dict.fromkeys([t["model"] for t in trained] + [e["model"] for e in evaluated]))
    return [{"model": model,
             "accuracy": [(e["version"], e["accuracy"]) for e in evaluated
                          if e["model"] == model and e["accuracy"] is not None],
             "phases": [{"event": "trained", "losses": t["losses"], "steps": t["steps"]} for t in trained
                        if t["model"] == model and t["skipped"] is None]} for model in models]
