"""Plots of one run, for trackers: accuracy per round with the client spread, and per client.

``fedsa compare`` plots compare algorithms over seeds; a single run logged to a tracker needs its
own two pictures: how the clients' accuracies moved (mean, with the band from the worst to the
best client) and where each client ended. Written to ``RUN_DIR/plots/`` only when a tracker is
enabled, so plain runs stay as fast and as small as before.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import MaxNLocator

from fedsa.reports.plots import new_axes, plot_client_accuracy
from fedsa.reports.runs import Run, load_run

PLOTS = "plots"
"""Folder of the run directory that holds them."""


def plot_run_accuracy(run: Run, path: Path) -> Path:
    """Mean client accuracy per evaluated round, the band spanning the worst to the best client.

    The band shows what a mean hides under label skew: one client falling behind the others.
    """
    evaluated = [m for m in run.metrics if m.get("eval")]
    rounds = [int(m["round"]) for m in evaluated]
    mean = [float(m["eval"]["accuracy_mean"]) for m in evaluated]
    accs = [[float(c["accuracy"]) for c in m["eval"]["clients"].values()] for m in evaluated]
    title = f"{run.algorithm}: mean client accuracy per round (band: worst to best client)"
    fig, ax = new_axes(title, "communication round", "client accuracy (fraction)")
    (line,) = ax.plot(rounds, mean, marker="o", markersize=3, label="mean over clients")
    ax.fill_between(
        rounds,
        [min(a) for a in accs],
        [max(a) for a in accs],
        color=line.get_color(),
        alpha=0.2,
        linewidth=0,
        label="min-max over clients",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best")
    fig.savefig(path)
    return path


def write_run_plots(run_dir: Path, algorithm: str, seed: int) -> list[Path]:
    """Draw a finished run's plots into ``RUN_DIR/plots/``; returns their paths."""
    run = load_run(algorithm, seed, run_dir)
    folder = Path(run_dir) / PLOTS
    folder.mkdir(parents=True, exist_ok=True)
    return [
        plot_run_accuracy(run, folder / "accuracy_vs_round.png"),
        plot_client_accuracy({algorithm: [run]}, folder / "client_accuracy.png"),
    ]
