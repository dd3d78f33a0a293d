"""The per-task table of a task-heterogeneous comparison (``data.client_tasks``).

A federation of tasks mixes two-way and three-way tasks with priors from 0.33 to 0.70, so the
client mean alone hides which tasks a method learns: this table gives, per method, each task's
accuracy and balanced accuracy (mean over the task's clients, then over seeds) beside its prior.
"""

from __future__ import annotations

from fedsa.reports.runs import Run, mean_or_nan
from fedsa.reports.tables import html_table, md_table


def _cells(runs: list[Run], task: str) -> tuple[float, float, float]:
    """Accuracy, balanced accuracy and majority prior of ``task``'s clients, over seeds."""
    acc, bal, prior = [], [], []
    for run in runs:
        own = run.summary.get("client_tasks", {})
        scored = [m for c, m in run.summary["final_clients"].items() if own.get(c) == task]
        acc += [m["accuracy"] for m in scored]
        bal += [m.get("balanced_accuracy", float("nan")) for m in scored]
        prior += [m.get("majority", float("nan")) for m in scored]
    return mean_or_nan(acc), mean_or_nan(bal), mean_or_nan(prior)


def task_rows(runs: dict[str, list[Run]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (``acc / balanced acc``); empty when no run gives clients own tasks."""
    tasks = list(
        dict.fromkeys(
            t
            for rs in runs.values()
            for r in rs
            for t in r.summary.get("client_tasks", {}).values()
        )
    )
    if not tasks:
        return [], []
    first = next(iter(runs.values()))
    header = ["algorithm", *tasks]
    rows = [["majority prior", *(f"{_cells(first, t)[2]:.3f}" for t in tasks)]]
    for algo, rs in runs.items():
        cells = [_cells(rs, t) for t in tasks]
        rows.append([algo, *(f"{a:.3f} / {b:.3f}" for a, b, _ in cells)])
    return header, rows


def task_markdown(runs: dict[str, list[Run]]) -> str:
    """The per-task table as Markdown, with its heading ("" when not a federation of tasks)."""
    header, rows = task_rows(runs)
    if not header:
        return ""
    note = "Per task (`data.client_tasks`): accuracy / balanced accuracy, mean over the task's "
    return note + "clients and the seeds.\n\n" + md_table(header, rows)


def task_html(runs: dict[str, list[Run]]) -> str:
    """The per-task table as HTML ("" when not a federation of tasks)."""
    header, rows = task_rows(runs)
    if not header:
        return ""
    return (
        "<p>Per task (data.client_tasks): accuracy / balanced accuracy, mean over the task's "
        f"clients and the seeds.</p>\n{html_table(header, rows)}"
    )
