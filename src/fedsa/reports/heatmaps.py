"""The A/B asymmetry analysis written out: ``analysis.json`` and one heatmap PNG per round.

Split from :mod:`fedsa.reports.analysis` (which computes the similarities): matplotlib's
object-oriented Agg canvas (no pyplot), so no global backend is switched and no display is needed.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedsa.core.io import atomic_write_bytes, atomic_write_json
from fedsa.reports.analysis import KINDS, analyze_run

log = logging.getLogger(__name__)


def plot_heatmaps(result: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write one PNG per analysed round: heatmaps of A beside B, and dA beside dB below.

    Uses matplotlib's object-oriented Agg canvas (no pyplot), so no global backend is switched and
    no display is needed. Each file is written atomically.

    Args:
        result: Output of :func:`analyze_run`.
        out_dir: Folder for ``round_<t>_cosine.png``.

    Returns:
        Paths of the written PNG files, in round order.
    """
    titles = {"A": "A (after)", "B": "B (after)", "dA": "change of A", "dB": "change of B"}
    paths = []
    for rnd in result["rounds"]:
        clients = rnd["clients"]
        k = len(clients)
        size = 2.8 + 0.45 * k
        fig = Figure(figsize=(2 * size + 1.2, 2 * size), constrained_layout=True)
        FigureCanvasAgg(fig)
        axes = fig.subplots(2, 2)
        image = None
        for ax, kind in zip(axes.flat, KINDS, strict=True):
            entry = rnd["mean"].get(kind)
            if entry is None:
                ax.set_axis_off()
                ax.set_title(f"{titles[kind]}: not in snapshots (frozen)")
                continue
            mat = np.asarray(entry["matrix"])
            image = ax.imshow(mat, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
            for i in range(k):
                for j in range(k):
                    color = "white" if abs(mat[i, j]) > 0.6 else "black"
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", color=color)
            ax.set_xticks(range(k), clients)
            ax.set_yticks(range(k), clients)
            ax.set_xlabel("client")
            ax.set_ylabel("client")
            off = entry["mean_offdiag"]
            ax.set_title(f"{titles[kind]}: mean {'n/a' if off is None else f'{off:.2f}'}")
        if image is not None:
            fig.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity")
        fig.suptitle(
            f"{result['algorithm']} ({result['variant']}), {result['partition']} partition, "
            f"alpha={result['dirichlet_alpha']}, round {rnd['round']}\n"
            "client x client cosine similarity, averaged over adapted layers"
        )
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        path = Path(out_dir) / f"round_{rnd['round']}_cosine.png"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


def write_analysis(
    run_dir: Path, rounds: Sequence[int] | None = None, out_dir: Path | None = None
) -> dict[str, Any]:
    """Analyse a run and write ``analysis.json`` and the heatmap PNGs.

    Args:
        run_dir: Run directory with snapshots.
        rounds: Rounds to analyse; all with snapshots when None.
        out_dir: Output folder; ``RUN_DIR/analysis`` when None.

    Returns:
        The :func:`analyze_run` result plus ``figures`` (PNG file names, relative to ``out_dir``).
    """
    run_dir = Path(run_dir)
    out = run_dir / "analysis" if out_dir is None else Path(out_dir)
    result = analyze_run(run_dir, rounds)
    result["figures"] = [p.name for p in plot_heatmaps(result, out)]
    atomic_write_json(out / "analysis.json", result)
    log.info("wrote %s and %d figure(s)", out / "analysis.json", len(result["figures"]))
    return result
