"""The learning curve of a run with training: held-out accuracy per version, and the loss per step."""

from __future__ import annotations

from pathlib import Path


def plot_training(summaries: list[dict], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for s in summaries:
        if s["accuracy"]:
            versions, shares = zip(*s["accuracy"])
            acc_ax.plot(versions, [100 * a for a in shares], marker="o", label=s["model"])
            acc_ax.set_xticks(versions)
            for v, a in s["accuracy"]:
                acc_ax.annotate(f"{100 * a:.0f}%", (v, 100 * a), textcoords="offset points", xytext=(0, 6),
                                ha="center", fontsize=8)
        losses = [loss for phase in s["phases"] if phase["event"] == "trained" for loss in phase["losses"]]
        loss_ax.plot(range(1, len(losses) + 1), losses, label=s["model"])
        step = 0
        for phase in s["phases"]:
            if phase["event"] == "trained":
                step += phase["steps"]
                loss_ax.axvline(step + 0.5, color="grey", lw=0.5, ls=":")
    acc_ax.set(xlabel="model version (0 = before training)", ylabel="held-out accuracy (%)",
               title="held-out accuracy, greedy, unaided")
    loss_ax.set(xlabel="optimizer step (dotted: end of a phase)", ylabel="training loss", title="training loss")
    for axis in (acc_ax, loss_ax):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_rounds(run_dirs: list[str | Path], path: str | Path) -> Path:
    """Held-out accuracy by round of several program runs side by side (round 0 = before training)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 4))
    for run_dir in map(Path, run_dirs):
        summary = json.loads((run_dir / "summary.json").read_text())
        shares = [e["accuracy"] for e in summary["evaluated"] if e["accuracy"] is not None]
        axis.plot(range(len(shares)), [100 * a for a in shares], marker="o", label=f"{summary['program']}")
        for x, a in enumerate(shares):
            axis.annotate(f"{100 * a:.0f}%", (x, 100 * a), textcoords="offset points", xytext=(0, 6), ha="center",
                          fontsize=8)
    axis.set(xlabel="rounds of training (0 = before)", ylabel="held-out accuracy (%)",
             title="held-out accuracy, greedy, unaided")
    axis.set_xticks(range(max(len(line.get_xdata()) for line in axis.get_lines())))
    axis.grid(alpha=0.3)
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Plot held-out accuracy by round of program runs side by side.")
    parser.add_argument("runs", nargs="+", help="run folders of finished programs")
    parser.add_argument("--out", default="rounds.png")
    print(plot_rounds(parser.parse_args().runs, parser.parse_args().out))
