"""The ``fedsa analyze`` and ``fedsa sweep`` commands (registered by :mod:`fedsa.cli`).

Both read finished run folders and never train; their heavy imports (torch, matplotlib) happen
inside the handlers so that ``fedsa --help`` stays fast.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedsa.core.errors import ConfigError


def parse_rounds(text: str | None) -> list[int] | None:
    """``--rounds 1,5`` into ``[1, 5]`` (None: every saved round)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ConfigError(f"--rounds {text!r} is not a list of round numbers: write e.g. 1,5")
    return [int(p) for p in parts]


def cmd_analyze(args: argparse.Namespace) -> int:
    """``fedsa analyze RUN_DIR [RUN_DIR ...]``: similarity per round; several runs: over seeds."""
    from fedsa.reports.asymmetry import analyze_command

    rounds = parse_rounds(args.rounds)
    out = None if args.out is None else Path(args.out)
    for line in analyze_command([Path(d) for d in args.run_dir], rounds, out, args.labels):
        print(line)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """``fedsa sweep LABEL=DIR [LABEL=DIR ...] --out DIR``: compare folders side by side."""
    from fedsa.reports.sweep import parse_setting

    settings = [parse_setting(text) for text in args.settings]
    algos = None
    if args.algorithms is not None:
        algos = [a.strip() for a in args.algorithms.split(",") if a.strip()]
        if not algos:
            raise ConfigError("--algorithms is empty: give e.g. fedit,fedsa-lora or leave it out")
    command = shlex.join(["fedsa", "sweep", *sys.argv[2:]]) if sys.argv[1:2] == ["sweep"] else ""
    if not command:  # called as a function (tests, notebooks): rebuild it
        command = shlex.join(["fedsa", "sweep", *args.settings, "--out", args.out])
    out = Path(args.out)
    result = write_sweep(settings, algos, out, command, xlabel=args.xlabel)
    print((out / "sweep.md").read_text(encoding="utf-8"), end="")
    for name in result["files"]:
        print(f"wrote {out / name}", file=sys.stderr)
    return 0


def write_sweep(
    settings: Sequence[tuple[str, Path]],
    algorithms: Sequence[str] | None,
    out: Path,
    command: str,
    xlabel: str = "setting",
) -> dict[str, Any]:
    """Compute the sweep and write ``sweep.json``, ``sweep.md`` and the plots into ``out``."""
    from fedsa.core.io import atomic_write_bytes, atomic_write_json
    from fedsa.reports.sweep import markdown, sweep
    from fedsa.reports.sweep_plots import plot_metric, plot_seen_unseen

    result = sweep(settings, algorithms)
    result.update({"command": command, "xlabel": xlabel})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", result)
    atomic_write_bytes(out / "sweep.md", markdown(result, command).encode("utf-8"))
    files = ["sweep.json", "sweep.md"]
    files.append(plot_metric(result, "acc", out / "accuracy_vs_setting.png").name)
    files.append(plot_metric(result, "bal", out / "balanced_vs_setting.png").name)
    if any(r["unseen_n"] for s in result["settings"] for r in s["rows"]):
        files.append(plot_seen_unseen(result, out / "seen_vs_unseen.png").name)
    result["files"] = files
    return result


def add_report_commands(sub: Any) -> None:
    """Register ``analyze`` and ``sweep`` on the ``fedsa`` sub-parser set."""
    a = sub.add_parser("analyze", help="client x client similarity of A and B from snapshots")
    a.add_argument("run_dir", nargs="+", help="run folder(s) with analysis.snapshot_rounds")
    a.add_argument("--rounds", default=None, help="comma-separated rounds (default: all saved)")
    a.add_argument("--out", default=None, help="output folder; several runs: their seed summary")
    a.add_argument(
        "--labels",
        action="store_true",
        help="also correlate client similarity with label-mix similarity (reloads the data)",
    )
    a.set_defaults(func=cmd_analyze)

    s = sub.add_parser(
        "sweep",
        help="compare folders of several settings side by side, with 95%% intervals and plots",
        description="Read finished `fedsa compare` folders, one per setting (e.g. Dirichlet "
        "alpha), and write tables and plots of every method across them (docs/results.md).",
    )
    s.add_argument("settings", nargs="+", help="LABEL=COMPARE_DIR, in axis order, e.g. 0.1=runs/a")
    s.add_argument("--out", required=True, help="folder for sweep.md, sweep.json and the plots")
    s.add_argument("--algorithms", default=None, help="comma-separated (default: all found)")
    s.add_argument("--xlabel", default="setting", help="label of the settings axis")
    s.set_defaults(func=cmd_sweep)
