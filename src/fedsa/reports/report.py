"""The ``fedsa compare`` report: one table row per algorithm, plots, Markdown and HTML.

Everything here reads finished run directories (``summary.json``, ``metrics.jsonl``) and never
trains, so a report can be regenerated at any time from what is on disk.

Layout written into the compare directory::

    DIR/report.md                 table, command line, plots linked as files
    DIR/report.html               the same, self-contained (plots as base64 data URIs)
    DIR/accuracy_vs_round.png     mean client accuracy per evaluated round
    DIR/accuracy_vs_mb.png        mean client accuracy per cumulative MB uploaded
    DIR/client_accuracy.png       final accuracy of each client, one bar per algorithm
    DIR/<algorithm>/seed_<s>/     the run directories
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import statistics
from pathlib import Path
from typing import Any

from fedsa.reports.participation import participation_html, participation_markdown
from fedsa.reports.per_task import task_html, task_markdown
from fedsa.reports.plots import (
    plot_accuracy_vs_mb,
    plot_accuracy_vs_round,
    plot_balanced_vs_round,
    plot_client_accuracy,
)
from fedsa.reports.runs import Run, mean_or_nan
from fedsa.reports.stats import add_intervals
from fedsa.reports.tables import html_table, md_table

log = logging.getLogger(__name__)

#: (key, header) of the report table, in column order; shared by Markdown and HTML.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("algorithm", "algorithm"),
    ("variant", "variant"),
    ("seeds", "seeds"),
    ("acc_mean", "mean acc ± std"),
    ("acc_ci", "95% CI"),
    ("delta", "Δ vs fedsa-lora (paired 95% CI)"),
    ("acc_weighted", "weighted acc"),
    ("acc_min", "worst client"),
    ("majority", "majority baseline"),
    ("gain", "gain over prior"),
    ("acc_unseen", "unseen clients acc"),
    ("bal_acc", "balanced acc"),
    ("macro_f1", "macro-F1"),
    ("mb_up", "MB up"),
    ("mb_down", "MB down"),
    ("epsilon", "epsilon (DP)"),
    ("trainable", "trainable params"),
    ("shared", "shared params"),
)

SKEW_COLUMNS = {"gain": "prior_gain", "bal_acc": "balanced_accuracy", "macro_f1": "macro_f1"}
"""Row keys of the label-skew-robust client means, and their ``summary.json`` names."""

NOTES = (
    "Accuracies are final-round (never best-round) values on each client's own evaluation "
    "shard, averaged over seeds. *mean acc* is the unweighted mean over clients (as in the "
    "paper), ± the sample standard deviation over seeds (0 for one seed); *weighted acc* weights "
    "clients by their number of evaluation examples; *worst client* is the lowest client "
    "accuracy; *95% CI* is the half-width of Student's t interval of *mean acc* over seeds, and "
    "*Δ vs fedsa-lora* the mean over common seeds of this row's mean acc minus FedSA-LoRA's, "
    "with its paired t interval; *majority baseline* is the mean client accuracy of always "
    "predicting the client's majority training label, and *gain over prior* the mean over "
    "clients of a client's accuracy minus its own majority prior; *balanced acc* (mean recall "
    "over the labels present) and *macro-F1* are client means too, and score a majority "
    "predictor at chance; *unseen clients acc* is the mean accuracy of the clients held out of "
    "training (eval.holdout_clients) after eval.adapt_steps local steps of their private part. "
    "MB are totals over all rounds and clients (10^6 bytes). "
    "*shared params* are the trainable parameters sent to the server; the rest stay private. "
    "*epsilon (DP)* is the client-level (epsilon, delta) spent by runs with privacy.mode = "
    "'client' (- without DP, ∞ with DP but no noise)."
)


def aggregate_rows(summaries_by_algo: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One table row per algorithm: seed means of the run summaries.

    Seeds of one algorithm are pooled so that a single number per column compares algorithms;
    the spread over seeds is kept only for the headline metric (mean client accuracy), as a
    sample standard deviation, because that is what papers report and what decides a ranking.

    Args:
        summaries_by_algo: ``summary.json`` contents of each algorithm's runs, one per seed,
            in the order the algorithms should appear.

    Returns:
        Rows with ``algorithm``, ``variant``, ``seeds`` (list), ``acc_mean``, ``acc_std``,
        ``acc_weighted``, ``acc_min``, ``majority``, ``gain``, ``bal_acc``, ``macro_f1`` (nan
        where the runs lack them), ``mb_up``, ``mb_down``, ``epsilon`` and ``wall_s`` (seed
        means), plus ``trainable`` and ``shared`` (from the first seed: the parameter
        counts do not depend on the seed).
    """
    rows = []
    for algo, sums in summaries_by_algo.items():
        if not sums:
            raise ValueError(f"no runs for algorithm {algo!r}")
        accs = [float(s["final"]["accuracy_mean"]) for s in sums]
        rows.append(
            {
                "algorithm": algo,
                "variant": sums[0].get("variant", ""),
                "seeds": [s.get("seed") for s in sums],
                "acc_mean": mean_or_nan(accs),
                "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "acc_weighted": mean_or_nan([float(s["final"]["accuracy_weighted"]) for s in sums]),
                "acc_min": mean_or_nan([float(s["final"]["accuracy_min"]) for s in sums]),
                "majority": mean_or_nan(
                    [float(s.get("majority_baseline", math.nan)) for s in sums]
                ),
                **{
                    key: mean_or_nan(
                        [float(s["final"].get(f"{name}_mean", math.nan)) for s in sums]
                    )
                    for key, name in SKEW_COLUMNS.items()
                },
                "acc_unseen": mean_or_nan(
                    [float(s.get("final_unseen", {}).get("accuracy_mean", math.nan)) for s in sums]
                ),
                "mb_up": mean_or_nan([float(s["mb_up"]) for s in sums]),
                "mb_down": mean_or_nan([float(s["mb_down"]) for s in sums]),
                "epsilon": mean_or_nan([_epsilon(s) for s in sums]),
                "trainable": int(sums[0]["params"]["trainable"]),
                "shared": int(sums[0]["params"]["shared"]),
                "wall_s": mean_or_nan([float(s.get("wall_s", math.nan)) for s in sums]),
            }
        )
    add_intervals(rows, summaries_by_algo)
    return rows


def _epsilon(summary: dict[str, Any]) -> float:
    """The run's final epsilon under client-level DP (inf: DP without noise; NaN: no DP)."""
    privacy = summary.get("privacy")
    if privacy is None:
        return math.nan
    return math.inf if privacy.get("epsilon") is None else float(privacy["epsilon"])


def format_cell(row: dict[str, Any], key: str) -> str:
    """The text of one table cell, identical in Markdown, HTML and (mostly) on stdout."""
    value = row[key]
    if key == "acc_mean":
        return f"{value:.4f} ± {row['acc_std']:.4f}"
    if key == "seeds":
        return ",".join(str(s) for s in value)
    if key == "delta" and not math.isnan(value):
        ci = row.get("delta_ci", math.nan)
        return f"{value:+.4f}" + ("" if math.isnan(ci) else f" ± {ci:.4f}")
    if key == "acc_ci" and not math.isnan(value):
        return f"± {value:.4f}"
    if key in ("trainable", "shared"):
        return f"{value:,}"
    if isinstance(value, float) and math.isnan(value):
        return "-"  # e.g. no majority baseline for generation tasks, no DP
    if key == "epsilon":
        return "∞" if math.isinf(value) else f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.3f}" if key.startswith("mb_") else f"{value:.4f}"
    return str(value)


def analysis_lines(runs: dict[str, list[Run]]) -> list[str]:
    """One A/B-similarity line per run that kept snapshots (analysed now if not yet)."""
    from fedsa.reports.heatmaps import write_analysis

    lines = []
    for algo, algo_runs in runs.items():
        for run in algo_runs:
            if not (run.path / "snapshots").is_dir():
                continue
            saved = run.path / "analysis" / "analysis.json"
            result = (
                json.loads(saved.read_text(encoding="utf-8"))
                if saved.exists()
                else write_analysis(run.path, None)
            )
            lines.append(f"{algo} seed {run.seed}: {result['summary_line']}")
    return lines


def _cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The comparison table's header and formatted cells."""
    return [h for _, h in COLUMNS], [[format_cell(r, k) for k, _ in COLUMNS] for r in rows]


def _markdown(
    rows: list[dict[str, Any]],
    command: str,
    config: str,
    pngs: dict[str, Path],
    analysis: list[str],
    runs: dict[str, list[Run]],
) -> str:
    parts = [
        "# fedsa compare report",
        f"Config file: `{config}`",
        f"Command:\n\n```\n{command}\n```",
        md_table(*_cells(rows)),
        NOTES,
        *([tasks] if (tasks := task_markdown(runs)) else []),
        *([sampled] if (sampled := participation_markdown(runs)) else []),
    ]
    if analysis:
        parts.append("A/B analysis (`fedsa analyze`):\n\n" + "\n".join(f"- {a}" for a in analysis))
    parts += [f"![{name}]({p.name})" for name, p in pngs.items()]
    return "\n\n".join(parts) + "\n"


def _html(
    rows: list[dict[str, Any]],
    command: str,
    config: str,
    pngs: dict[str, Path],
    analysis: list[str],
    runs: dict[str, list[Run]],
) -> str:
    e = html.escape
    items = "".join(f"<li>{e(a)}</li>" for a in analysis)
    ab = f"<p>A/B analysis (fedsa analyze):</p><ul>{items}</ul>\n" if analysis else ""
    tables = task_html(runs) + participation_html(runs)
    imgs = "".join(
        f'<figure><img alt="{e(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode("ascii")}"></figure>\n'
        for name, p in pngs.items()
    )
    style = (
        "body{font-family:sans-serif;max-width:64em;margin:2em auto}"
        "table{border-collapse:collapse}th,td{border:1px solid #bbb;padding:.3em .6em}"
        "td{text-align:right}td:nth-child(-n+2){text-align:left}img{max-width:100%}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>fedsa compare report</title><style>{style}</style></head><body>\n"
        f"<h1>fedsa compare report</h1>\n<p>Config file: <code>{e(config)}</code></p>\n"
        f"<p>Command:</p><pre>{e(command)}</pre>\n"
        f"{html_table(*_cells(rows))}"
        f"<p>{e(NOTES).replace('*', '')}</p>\n{tables}{ab}{imgs}</body></html>\n"
    )


def write_report(
    out_dir: Path,
    rows: list[dict[str, Any]],
    runs: dict[str, list[Run]],
    command: str,
    *,
    config: str = "",
) -> dict[str, Path]:
    """Write the plots, ``report.md`` and ``report.html`` into ``out_dir``.

    The HTML embeds the plots so that it can be mailed or attached on its own; the Markdown
    links the PNG files next to it, which keeps it readable in a repository browser.

    Args:
        out_dir: The compare directory (it holds the run directories).
        rows: Table rows from :func:`aggregate_rows`, in display order.
        runs: Loaded runs per algorithm, first seed first.
        command: The command line that produced the runs, shown verbatim for reproduction.
        config: The config file name, shown next to the command.

    Returns:
        Paths by name: ``accuracy_vs_round``, ``accuracy_vs_mb``, ``client_accuracy``,
        ``balanced_vs_round`` (classification runs), ``markdown`` and ``html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = {
        "accuracy_vs_round": plot_accuracy_vs_round(runs, out_dir / "accuracy_vs_round.png"),
        "accuracy_vs_mb": plot_accuracy_vs_mb(runs, out_dir / "accuracy_vs_mb.png"),
        "client_accuracy": plot_client_accuracy(runs, out_dir / "client_accuracy.png"),
    }
    balanced = [
        r for rs in runs.values() for r in rs if "balanced_accuracy_mean" in r.summary["final"]
    ]
    if balanced and len(balanced) == sum(len(rs) for rs in runs.values()):  # classification runs
        pngs["balanced_vs_round"] = plot_balanced_vs_round(runs, out_dir / "balanced_vs_round.png")
    analysis = analysis_lines(runs)
    md = out_dir / "report.md"
    md.write_text(_markdown(rows, command, config, pngs, analysis, runs), encoding="utf-8")
    page = out_dir / "report.html"
    page.write_text(_html(rows, command, config, pngs, analysis, runs), encoding="utf-8")
    log.info("wrote %s and %s", md, page)
    return {**pngs, "markdown": md, "html": page}
