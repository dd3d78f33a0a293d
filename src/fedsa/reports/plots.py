"""The ``fedsa compare`` plots: accuracy against rounds and against MB uploaded, and per client.

matplotlib's object-oriented Agg canvas (no pyplot), so no global backend is switched and no
display is needed.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fedsa.reports.runs import Run, mean_or_nan


def _curves(
    runs: list[Run], x_key: str, metric: str = "accuracy_mean"
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Seed mean, min and max of ``metric`` at rounds evaluated (with it) in every seed."""
    per_seed = [{m["round"]: m for m in r.metrics if metric in m.get("eval", {})} for r in runs]
    rounds = sorted(set.intersection(*(set(d) for d in per_seed))) if per_seed else []
    xs, mean, lo, hi = [], [], [], []
    for rnd in rounds:
        accs = [float(d[rnd]["eval"][metric]) for d in per_seed]
        xs.append(
            mean_or_nan([float(rnd if x_key == "round" else d[rnd][x_key] / 1e6) for d in per_seed])
        )
        mean.append(mean_or_nan(accs))
        lo.append(min(accs))
        hi.append(max(accs))
    return xs, mean, lo, hi


def new_axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    """A titled, labelled, gridded Agg figure: the one look shared by every report plot."""
    fig = Figure(figsize=(7.5, 4.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)  # explicit Agg: no display, no pyplot global state
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.35)
    return fig, ax


def _plot_curves(
    runs: dict[str, list[Run]], path: Path, x_key: str, xlabel: str, metric: str = "accuracy_mean"
) -> Path:
    n_seeds = max((len(rs) for rs in runs.values()), default=1)
    what = f"mean over {n_seeds} seeds, band: min-max" if n_seeds > 1 else "one seed"
    name = "accuracy" if metric == "accuracy_mean" else "balanced accuracy"
    title = f"Mean client {name} vs {'round' if x_key == 'round' else 'MB uploaded'} ({what})"
    fig, ax = new_axes(title, xlabel, f"mean client {name} (fraction)")
    for algo, rs in runs.items():
        xs, mean, lo, hi = _curves(rs, x_key, metric)
        (line,) = ax.plot(xs, mean, marker="o", markersize=3, label=algo)
        if len(rs) > 1:
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    base = [float(r.summary.get("majority_baseline", math.nan)) for rs in runs.values() for r in rs]
    if metric == "accuracy_mean" and (base := [b for b in base if not math.isnan(b)]):
        ax.axhline(mean_or_nan(base), color="grey", ls="--", lw=1, label="majority baseline")
    if x_key == "round":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best")
    fig.savefig(path)
    return path


def plot_accuracy_vs_round(runs: dict[str, list[Run]], path: Path) -> Path:
    """Learning curves: shows whether algorithms differ in speed, not just end point."""
    return _plot_curves(runs, path, "round", "communication round")


def plot_accuracy_vs_mb(runs: dict[str, list[Run]], path: Path) -> Path:
    """Accuracy per communication cost: the trade-off FedSA-LoRA is designed to improve."""
    return _plot_curves(runs, path, "cum_bytes_up", "cumulative upload, all clients (MB)")


def plot_balanced_vs_round(runs: dict[str, list[Run]], path: Path) -> Path:
    """Balanced accuracy curves: a head that learned only a skewed shard's prior stays at chance."""
    return _plot_curves(runs, path, "round", "communication round", "balanced_accuracy_mean")


def _client_key(cid: str) -> tuple[int, str]:
    return (int(cid), "") if cid.isdigit() else (1 << 30, cid)


def plot_client_accuracy(runs: dict[str, list[Run]], path: Path) -> Path:
    """Per-client final accuracy of the first seed: personalisation shows up client by client.

    The first seed only, because the partition depends on the seed, so "client 0" of two seeds
    holds different data and averaging them would hide exactly what this plot is for.
    """
    firsts = {algo: rs[0] for algo, rs in runs.items() if rs}
    clients = sorted(
        {c for r in firsts.values() for c in r.summary["final_clients"]}, key=_client_key
    )
    seed = next(iter(firsts.values())).seed if firsts else 0
    fig, ax = new_axes(f"Final accuracy per client (seed {seed})", "client", "accuracy (fraction)")
    width = 0.8 / max(len(firsts), 1)
    for i, (algo, r) in enumerate(firsts.items()):
        accs = [
            float(r.summary["final_clients"].get(c, {}).get("accuracy", math.nan)) for c in clients
        ]
        xs = [j + (i - (len(firsts) - 1) / 2) * width for j in range(len(clients))]
        ax.bar(xs, accs, width=width, label=algo)
    ax.set_xticks(list(range(len(clients))), clients)
    ax.set_ylim(0, 1.18)  # headroom for the legend above 100 % bars
    ax.grid(False, axis="x")
    ax.legend(loc="upper center", ncols=min(len(firsts), 5))
    fig.savefig(path)
    return path
