"""A sweep over settings: several ``fedsa compare`` folders side by side, with 95% intervals.

A single compare folder ranks methods in one setting. Whether a method's advantage holds as the
data get more or less skewed (Dirichlet alpha, IID) or as unseen clients adapt longer needs the
same methods in several settings on one axis, each point with its seed interval, since at 3
seeds one method is often inside another's spread. ``fedsa sweep`` reads finished compare
folders only (never trains), so it can be redrawn at any time.

Layout written into ``--out``::

    sweep.json                  per setting, the compare rows (report.aggregate_rows) plus
                                balanced accuracy and unseen-client accuracy with intervals
    sweep.md                    tables: mean acc, balanced acc, paired delta vs fedsa-lora
    accuracy_vs_setting.png     mean client accuracy per setting, 95% interval bands
    balanced_vs_setting.png     the same for balanced accuracy
    seen_vs_unseen.png          (runs with eval.holdout_clients) seen and unseen clients
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedsa.core.errors import DataError
from fedsa.engine.results import read_summary
from fedsa.reports.report import aggregate_rows
from fedsa.reports.stats import mean_ci

#: (row key, summary path inside ``final`` / top level, label) of the interval metrics.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("acc", "accuracy_mean", "mean client accuracy"),
    ("bal", "balanced_accuracy_mean", "mean client balanced accuracy"),
    ("unseen", "unseen", "mean unseen-client accuracy"),
)


def parse_setting(text: str) -> tuple[str, Path]:
    """``LABEL=DIR`` into its parts (a one-line error naming the fix otherwise)."""
    label, sep, folder = text.rpartition("=")  # the folder is after the last '='
    if not sep or not label.strip() or not folder.strip():
        raise DataError(f"setting {text!r} is not LABEL=COMPARE_DIR: write e.g. 0.5=runs/mnli")
    return label.strip(), Path(folder.strip())


def _metric(summary: dict[str, Any], key: str) -> float:
    if key == "unseen":
        return float(summary.get("final_unseen", {}).get("accuracy_mean", math.nan))
    return float(summary["final"].get(key, math.nan))


def load_setting(folder: Path, algorithms: Sequence[str] | None) -> dict[str, list[dict[str, Any]]]:
    """The finished runs' summaries of one compare folder, per algorithm, seeds in order.

    Raises:
        DataError: If the folder is missing, holds no finished run, or lacks a requested method.
    """
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: give a `fedsa compare --out` folder")
    found: dict[str, list[dict[str, Any]]] = {}
    for algo_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        seeds = [p for p in algo_dir.glob("seed_*") if (p / "summary.json").is_file()]
        seeds.sort(key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
        if seeds:
            found[algo_dir.name] = [read_summary(p) for p in seeds]
    if not found:
        raise DataError(f"{folder} holds no finished run: run `fedsa compare ... --out {folder}`")
    if algorithms is None:
        return found
    missing = [a for a in algorithms if a not in found]
    if missing:
        raise DataError(
            f"{folder} has no finished run of {', '.join(missing)}: run them there, or leave "
            f"them out of --algorithms (it has {', '.join(found)})"
        )
    return {a: found[a] for a in algorithms}


def sweep(settings: Sequence[tuple[str, Path]], algorithms: Sequence[str] | None) -> dict[str, Any]:
    """Every setting's compare rows, with 95% t intervals over seeds of each interval metric.

    Returns:
        ``{"settings": [{"label", "folder", "rows": [...]}]}``; each row is a compare row
        (:func:`fedsa.reports.report.aggregate_rows`: ``acc_mean``, ``acc_ci``, ``delta``,
        ``delta_ci``, ...) plus ``{key}_mean``, ``{key}_ci`` and ``{key}_n`` for the rest of
        :data:`METRICS` (``bal``, ``unseen``; nan where the runs lack it).
    """
    if not settings:
        raise DataError("no settings given: pass LABEL=COMPARE_DIR, e.g. 0.5=runs/mnli-dir05")
    labels = [label for label, _ in settings]
    if len(set(labels)) != len(labels):
        raise DataError(f"settings {labels} repeat a label: give each setting its own label")
    out = []
    for label, folder in settings:
        sums = load_setting(folder, algorithms)
        rows = aggregate_rows(sums)
        for row in rows:
            for key, name, _ in METRICS[1:]:  # acc_mean and acc_ci: aggregate_rows has them
                vals = [v for v in (_metric(s, name) for s in sums[row["algorithm"]]) if v == v]
                mean, half = mean_ci(vals) if vals else (math.nan, math.nan)
                row.update({f"{key}_mean": mean, f"{key}_ci": half, f"{key}_n": len(vals)})
        out.append({"label": label, "folder": str(folder), "rows": rows})
    return {"settings": out}


def _num(value: float, ci: float, signed: bool = False) -> str:
    if value != value:
        return "-"
    text = f"{value:+.4f}" if signed else f"{value:.4f}"
    return text if ci != ci else f"{text} ± {ci:.4f}"


def algorithms_of(result: dict[str, Any]) -> list[str]:
    """Every algorithm in any setting, in first-seen order."""
    names: list[str] = []
    for setting in result["settings"]:
        names += [r["algorithm"] for r in setting["rows"] if r["algorithm"] not in names]
    return names


def _table(result: dict[str, Any], cell: Any) -> list[str]:
    settings = result["settings"]
    head = ["algorithm", *(s["label"] for s in settings)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for algo in algorithms_of(result):
        cells = []
        for s in settings:
            row = next((r for r in s["rows"] if r["algorithm"] == algo), None)
            cells.append("not run" if row is None else cell(row))
        lines.append("| " + " | ".join([algo, *cells]) + " |")
    return lines


def markdown(result: dict[str, Any], command: str) -> str:
    """``sweep.md``: the command, then one table per quantity (rows: methods, columns: settings)."""
    lines = ["# Sweep", "", f"`{command}`", ""]

    def cell(key: str, signed: bool = False) -> Any:
        return lambda r: _num(r[f"{key}_mean"], r[f"{key}_ci"], signed)

    sections = [
        ("Mean client accuracy ± 95% CI (seeds)", cell("acc")),
        (
            "Paired difference from fedsa-lora ± 95% CI",
            lambda r: _num(r["delta"], r["delta_ci"], True),
        ),
        ("Balanced accuracy ± 95% CI", cell("bal")),
        ("Gain over the majority prior", lambda r: _num(r["gain"], math.nan, True)),
        ("Seeds", lambda r: ", ".join(str(s) for s in r["seeds"])),
    ]
    if any(r["unseen_n"] for s in result["settings"] for r in s["rows"]):
        sections.insert(3, ("Unseen clients: accuracy ± 95% CI", cell("unseen")))
    for title, make in sections:
        lines += [f"## {title}", "", *_table(result, make), ""]
    lines.append(
        "Final-round values; intervals are Student-t 95% over seeds (none for one seed); the "
        "paired difference is taken seed by seed against fedsa-lora in the same setting."
    )
    return "\n".join(lines) + "\n"
