"""The ``fedsa sweep`` plots: one line per method across settings, with 95% interval bands.

Settings (Dirichlet alpha, IID, adapt steps) are placed at equal spacing in the order given,
because the axis mixes numbers and names (``IID``) and the spacing of alpha carries no meaning
for the reader beyond its order.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fedsa.reports.plots import new_axes
from fedsa.reports.sweep import METRICS, algorithms_of


def _series(result: dict[str, Any], algo: str, key: str) -> tuple[list[float], ...]:
    """The x positions, means, lower and upper band edges of one method (nan where not run)."""
    xs, mean, lo, hi = [], [], [], []
    for i, setting in enumerate(result["settings"]):
        row = next((r for r in setting["rows"] if r["algorithm"] == algo), None)
        m = math.nan if row is None else float(row[f"{key}_mean"])
        half = math.nan if row is None else float(row[f"{key}_ci"])
        half = 0.0 if half != half else half  # one seed: a point without a band
        xs.append(float(i))
        mean.append(m)
        lo.append(m - half)
        hi.append(m + half)
    return xs, mean, lo, hi


def _finish(ax: Any, result: dict[str, Any]) -> None:
    labels = [s["label"] for s in result["settings"]]
    ax.set_xticks(list(range(len(labels))), labels)
    ax.legend(loc="best", fontsize="small")


def plot_metric(result: dict[str, Any], key: str, path: Path) -> Path:
    """Mean client ``key`` (``acc`` or ``bal``) against the setting, band: 95% t interval."""
    name = next(label for k, _, label in METRICS if k == key)
    seeds = max((len(r["seeds"]) for s in result["settings"] for r in s["rows"]), default=1)
    what = f"mean over {seeds} seeds, band: 95% CI" if seeds > 1 else "one seed"
    fig, ax = new_axes(f"{name[0].upper()}{name[1:]} ({what})", result.get("xlabel", ""), name)
    for algo in algorithms_of(result):
        xs, mean, lo, hi = _series(result, algo, key)
        (line,) = ax.plot(xs, mean, marker="o", markersize=4, label=algo)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    if key == "acc":
        prior = [
            float(r["majority"]) for s in result["settings"] for r in s["rows"][:1]
        ]  # the prior depends on the split only: one row per setting
        ax.plot(range(len(prior)), prior, color="grey", ls="--", lw=1, label="majority prior")
    _finish(ax, result)
    fig.savefig(path)
    return path


def plot_seen_unseen(result: dict[str, Any], path: Path) -> Path:
    """Seen clients (solid) and unseen clients (dashed) of each method against the setting."""
    fig, ax = new_axes(
        "Seen vs unseen clients (band: 95% CI over seeds)",
        result.get("xlabel", ""),
        "mean client accuracy",
    )
    for algo in algorithms_of(result):
        xs, mean, lo, hi = _series(result, algo, "acc")
        (line,) = ax.plot(xs, mean, marker="o", markersize=4, label=f"{algo} seen")
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.12, linewidth=0)
        xs, mean, lo, hi = _series(result, algo, "unseen")
        color = line.get_color()
        ax.plot(xs, mean, marker="s", markersize=4, ls="--", color=color, label=f"{algo} unseen")
        ax.fill_between(xs, lo, hi, color=color, alpha=0.08, linewidth=0)
    _finish(ax, result)
    fig.savefig(path)
    return path
