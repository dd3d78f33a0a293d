"""The A/B asymmetry over seeds: per-round similarities with 95% intervals, and A minus B paired.

One run's similarities (:mod:`fedsa.reports.analysis`) depend on its seed's partition and
initialisation, so a claim such as "A is more alike across clients than B" needs several seeds and
an interval. The test is paired: each seed's ``A - B`` (and ``dA - dB``, the changes made in the
round) is taken inside that run, then the interval is over seeds, so the shared per-seed variation
cancels. The claim holds in a round when the paired interval of ``dA - dB`` lies above zero; raw
``A - B`` is reported too, but it mostly measures the common starting point (docs/results.md).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedsa.core.errors import DataError
from fedsa.core.io import atomic_write_bytes, atomic_write_json
from fedsa.reports.analysis import KINDS
from fedsa.reports.heatmaps import write_analysis
from fedsa.reports.label_alignment import alignment, client_label_mixes
from fedsa.reports.stats import mean_ci, paired_ci

#: Paired differences reported beside the kinds: (name, minuend, subtrahend).
DIFFERENCES = (("A-B", "A", "B"), ("dA-dB", "dA", "dB"))


def _value(rnd: Mapping[str, Any], kind: str) -> float | None:
    entry = rnd["mean"].get(kind)
    return None if entry is None else entry.get("mean_offdiag")


def _interval(pair: tuple[float, float], n: int) -> dict[str, Any]:
    mean, half = pair
    return {"mean": mean, "ci95": None if math.isnan(half) else half, "n": n}


def seed_summary(
    results: Sequence[Mapping[str, Any]], alignments: Sequence[Mapping[int, Any]] | None = None
) -> dict[str, Any]:
    """Mean and 95% interval over runs of each round's mean pairwise cosine, and the differences.

    Args:
        results: :func:`fedsa.reports.analysis.analyze_run` results of runs that differ only in
            their seed (same algorithm, variant and split), analysed over the same rounds.
        alignments: optional :func:`fedsa.reports.label_alignment.alignment` of each run (same
            order): then each round also has ``labels[kind]``, the interval over seeds of the
            correlation between that kind's client similarity and the label-mix similarity.

    Returns:
        ``algorithm``, ``variant``, ``partition``, ``dirichlet_alpha``, ``runs`` (their folders)
        and ``rounds``: per round, ``kinds[kind]`` and ``differences[name]``, each
        ``{"mean", "ci95", "n"}`` (``ci95`` None with one run), plus ``holds``: whether the
        paired ``dA - dB`` interval lies above zero (None with one run).

    Raises:
        DataError: If no results are given, or the runs differ in setting or analysed rounds.
    """
    if not results:
        raise DataError("no analysed runs given: pass one or more run directories")
    keys = ("algorithm", "variant", "partition", "dirichlet_alpha")
    first = results[0]
    for res in results[1:]:
        for key in keys:
            if res[key] != first[key]:
                raise DataError(
                    f"{res['run_dir']} has {key}={res[key]!r} but {first['run_dir']} has "
                    f"{first[key]!r}: summarise runs of one setting that differ only in seed"
                )
    rounds = [r["round"] for r in first["rounds"]]
    for res in results[1:]:
        if [r["round"] for r in res["rounds"]] != rounds:
            raise DataError(
                f"{res['run_dir']} was analysed over rounds {[r['round'] for r in res['rounds']]}"
                f" but {first['run_dir']} over {rounds}: pass --rounds with rounds all runs have"
            )
    out_rounds = []
    for i, t in enumerate(rounds):
        per_run = [res["rounds"][i] for res in results]
        kinds: dict[str, Any] = {}
        for kind in KINDS:
            found = [_value(r, kind) for r in per_run]
            vals = [float(v) for v in found if v is not None]
            if len(vals) == len(found):
                kinds[kind] = _interval(mean_ci(vals), len(vals))
        diffs: dict[str, Any] = {}
        for name, a, b in DIFFERENCES:
            if a in kinds and b in kinds:
                va = [float(_value(r, a) or 0.0) for r in per_run]
                vb = [float(_value(r, b) or 0.0) for r in per_run]
                diffs[name] = _interval(paired_ci(va, vb), len(va))
        change = diffs.get("dA-dB")
        holds = None
        if change is not None and change["ci95"] is not None:
            holds = bool(change["mean"] - change["ci95"] > 0)
        entry = {"round": t, "kinds": kinds, "differences": diffs, "holds": holds}
        if alignments is not None:
            entry["labels"] = _label_intervals([a.get(t, {}) for a in alignments])
        out_rounds.append(entry)
    return {
        **{key: first[key] for key in keys},
        "runs": [res["run_dir"] for res in results],
        "rounds": out_rounds,
    }


def _label_intervals(per_run: Sequence[Mapping[str, float | None]]) -> dict[str, Any]:
    """Each kind's correlation with the label mixes: interval over the runs where it is defined."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        vals = [float(v) for v in (r.get(kind) for r in per_run) if v is not None]
        if vals:
            out[kind] = _interval(mean_ci(vals), len(vals))
    return out


def _cell(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "n/a"
    ci = entry["ci95"]
    return f"{entry['mean']:.2f}" if ci is None else f"{entry['mean']:.2f} ± {ci:.2f}"


def markdown_table(summary: Mapping[str, Any]) -> str:
    """The seed summary as a Markdown table: one row per round, mean ± 95% interval."""
    head = ["round", *KINDS, *(name for name, _, _ in DIFFERENCES), "dA > dB?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rnd in summary["rounds"]:
        holds = {True: "yes", False: "no", None: "n/a"}[rnd["holds"]]
        cells = [_cell(rnd["kinds"].get(k)) for k in KINDS]
        cells += [_cell(rnd["differences"].get(name)) for name, _, _ in DIFFERENCES]
        lines.append("| " + " | ".join([str(rnd["round"]), *cells, holds]) + " |")
    if all("labels" in rnd for rnd in summary["rounds"]) and summary["rounds"]:
        head = ["round", *(f"r({kind}, labels)" for kind in KINDS)]
        lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for rnd in summary["rounds"]:
            cells = [_cell(rnd["labels"].get(k)) for k in KINDS]
            lines.append("| " + " | ".join([str(rnd["round"]), *cells]) + " |")
    return "\n".join(lines)


def plot_summary(summary: Mapping[str, Any], path: Path) -> Path:
    """Similarity of A, B and of their changes against the round, with 95% interval bars."""
    fig = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    rounds = [r["round"] for r in summary["rounds"]]
    styles = {"A": ("C0", "-"), "B": ("C1", "-"), "dA": ("C0", "--"), "dB": ("C1", "--")}
    for kind, (color, line) in styles.items():
        entries = [r["kinds"].get(kind) for r in summary["rounds"]]
        if any(e is None for e in entries):
            continue
        means = [e["mean"] for e in entries if e is not None]
        errs = [e["ci95"] or 0.0 for e in entries if e is not None]
        label = kind if not kind.startswith("d") else f"{kind[1]} change"
        ax.errorbar(rounds, means, yerr=errs, color=color, linestyle=line, marker="o",
                    capsize=3, label=label)  # fmt: skip
    split = "IID" if summary["partition"] == "iid" else f"Dirichlet {summary['dirichlet_alpha']}"
    n = len(summary["runs"])
    ax.set_title(f"{summary['algorithm']}, {split}: mean pairwise cosine over clients ({n} seeds)")
    ax.set_xlabel("round")
    ax.set_ylabel("cosine similarity (95% interval)")
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
    return path


def analyze_command(
    run_dirs: Sequence[Path], rounds: Sequence[int] | None, out: Path | None, labels: bool = False
) -> list[str]:
    """``fedsa analyze``: analyse each run (into its ``analysis/``); several runs: seed summary.

    With one run the output folder is ``--out`` (default ``RUN_DIR/analysis``). With several, each
    run's own analysis goes to its ``analysis/`` folder and the summary (``asymmetry.json``,
    ``asymmetry.md``, ``asymmetry.png``) to ``--out``, which is then required. With ``labels``
    each run's data are reloaded to correlate client similarity with label-mix similarity.

    Returns:
        The lines to print.
    """
    if len(run_dirs) > 1 and out is None:
        raise DataError("several run directories: give --out DIR for their seed summary")
    lines: list[str] = []
    results, aligned = [], []
    for run_dir in run_dirs:
        own = out if len(run_dirs) == 1 and out is not None else run_dir / "analysis"
        result = write_analysis(run_dir, rounds, own)
        results.append(result)
        prefix = f"{run_dir}: " if len(run_dirs) > 1 else ""
        lines += [prefix + r["summary_line"] for r in result["rounds"]]
        lines.append(f"wrote {own / 'analysis.json'}")
        lines += [f"wrote {own / name}" for name in result["figures"]]
        if labels:
            aligned.append(alignment(result, client_label_mixes(run_dir)))
            for t, corr in aligned[-1].items():
                text = ", ".join(
                    f"{k} {'n/a' if v is None else f'{v:.2f}'}" for k, v in corr.items()
                )
                lines.append(f"{prefix}round {t}: correlation with label-mix similarity: {text}")
    if len(run_dirs) > 1 and out is not None:
        summary = seed_summary(results, aligned if labels else None)
        atomic_write_json(out / "asymmetry.json", summary)
        atomic_write_bytes(out / "asymmetry.md", (markdown_table(summary) + "\n").encode("utf-8"))
        plot_summary(summary, out / "asymmetry.png")
        lines.append(markdown_table(summary))
        lines += [f"wrote {out / n}" for n in ("asymmetry.json", "asymmetry.md", "asymmetry.png")]
    return lines
