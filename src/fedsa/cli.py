"""The ``fedsa`` command: run, compare, analyze, sweep, list, export, predict, adapt, flower.

User mistakes (:class:`~fedsa.core.errors.FedsaError`) print one line on stderr and exit with
status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedsa.core.errors import ConfigError, FedsaError
from fedsa.reports.commands import add_report_commands
from fedsa.use.commands import add_use_commands


def _quiet_libraries() -> None:
    """Silence library chatter that says nothing to a user of this command."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    # VeRA: we rebuild the projections from the seed on purpose and never save them.
    warnings.filterwarnings("ignore", message=r"Specified to not save vera_A", category=UserWarning)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _progress_run(
    cfg: Any, out: Path, overwrite: bool, label: str, resume: bool = False
) -> dict[str, Any]:
    """Run with a progress bar that appears once data and model are ready.

    Nothing is printed before that, so a mistake found while preparing is the only line shown.
    """
    from tqdm import tqdm

    from fedsa.engine.runner import run

    bars: list[tqdm[Any]] = []

    def on_ready(_: Any) -> None:
        bars.append(tqdm(total=cfg.federation.rounds, desc=label, unit="round", file=sys.stderr))

    def on_round(rec: dict[str, Any]) -> None:
        bar = bars[0]
        loss = rec["train_loss"]
        post = {"loss": "-" if loss is None else f"{loss:.3f}"}
        if rec.get("skipped"):
            post["skipped"] = "yes"
        if "eval" in rec:
            post["acc"] = f"{rec['eval']['accuracy_mean']:.3f}"
        post["MB_up"] = f"{rec['cum_bytes_up'] / 1e6:.2f}"
        if (rec.get("privacy") or {}).get("epsilon") is not None:
            post["eps"] = f"{rec['privacy']['epsilon']:.2f}"
        bar.set_postfix(post)
        bar.update(rec["round"] - bar.n)  # a resumed run starts past round 0

    try:
        return run(
            cfg, out, overwrite=overwrite, resume=resume, on_round=on_round, on_ready=on_ready
        )
    finally:
        for bar in bars:
            bar.close()


def cmd_run(args: argparse.Namespace) -> int:
    """``fedsa run CONFIG [key=value ...] --out DIR`` or ``fedsa run [CONFIG] --resume DIR``."""
    from fedsa.config.load import config_from_dict, load_config
    from fedsa.engine.results import RunDir

    if args.resume is not None:
        if args.out is not None or args.overwrite:
            raise ConfigError("--resume continues RUN_DIR in place: drop --out and --overwrite")
        out = Path(args.resume)
        if args.config is None:
            cfg = config_from_dict(RunDir.reopen(out).read_config())
        else:
            cfg = load_config(args.config, args.overrides)
    else:
        if args.config is None or args.out is None:
            raise ConfigError("fedsa run needs CONFIG and --out DIR (or --resume RUN_DIR)")
        out = Path(args.out)
        cfg = load_config(args.config, args.overrides)
    resume = args.resume is not None
    summary = _progress_run(cfg, out, args.overwrite, cfg.algorithm, resume)
    fin = summary["final"]
    clients = summary["final_clients"].values()
    metric = "exact match" if all("exact_match" in c for c in clients) else "accuracy"
    print(
        f"{cfg.algorithm} ({cfg.adapter.variant}) on {summary['task']}: mean client {metric} "
        f"{fin['accuracy_mean']:.4f} (weighted {fin['accuracy_weighted']:.4f}, "
        f"worst {fin['accuracy_min']:.4f}), {summary['mb_up']:.3f} MB up; results in {out}"
    )
    return 0


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of compare results, one row per algorithm (seed means, see report)."""
    from fedsa.reports.report import format_cell

    keys = ["algorithm", "variant", "seeds", "acc_mean", "acc_weighted", "acc_min", "majority"]
    keys += ["gain", "bal_acc", "mb_up", "mb_down", "trainable", "shared", "wall_s"]
    head = ["algorithm", "variant", "seeds", "mean acc ± std", "weighted", "worst", "majority"]
    head += ["gain", "bal. acc", "MB up", "MB down", "trainable", "shared", "time s"]
    body = [[format_cell(r, k) if k != "wall_s" else f"{r[k]:.0f}" for k in keys] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:
    """``fedsa compare CONFIG --algorithms a,b [--seeds 0,1] --out DIR``: same data and seeds.

    Runs go to ``DIR/<algorithm>/seed_<s>/``; finished runs of the same resolved config are
    reused, and the report (table, plots, ``report.md``, ``report.html``) is always rewritten.
    """
    import shlex

    from fedsa.config.load import load_config
    from fedsa.engine.results import read_summary
    from fedsa.reports.report import aggregate_rows, write_report
    from fedsa.reports.runs import Run, load_run

    names = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    if not names:
        raise ConfigError("--algorithms is empty: give e.g. fedit,ffa-lora,fedsa-lora")
    if len(set(names)) != len(names):
        raise ConfigError(f"--algorithms {args.algorithms!r} names an algorithm twice")
    try:
        seeds = [int(x) for x in (args.seeds or "").split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"--seeds {args.seeds!r}: give comma-separated integers, e.g. 0,1,2"
        ) from None
    if args.seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
        raise ConfigError(f"--seeds {args.seeds!r}: give distinct integers, e.g. 0,1,2")
    seeds = seeds or [load_config(args.config, args.overrides).seed]
    jobs = [(n, s) for n in names for s in seeds]
    configs = [
        load_config(args.config, [*args.overrides, f"algorithm={n}", f"seed={s}"]) for n, s in jobs
    ]
    out = Path(args.out)
    runs: dict[str, list[Run]] = {}
    for i, cfg in enumerate(configs, 1):
        label = f"{cfg.algorithm} seed={cfg.seed} ({i}/{len(configs)})"
        run_dir = out / cfg.algorithm / f"seed_{cfg.seed}"
        done = (run_dir / "summary.json").exists() and not args.overwrite
        if done and read_summary(run_dir).get("config_sha256") == cfg.sha256():
            print(f"{label}: reusing finished run in {run_dir}", file=sys.stderr)
        else:
            _progress_run(cfg, run_dir, True, label)
        runs.setdefault(cfg.algorithm, []).append(load_run(cfg.algorithm, cfg.seed, run_dir))
    rows = aggregate_rows({a: [r.summary for r in rs] for a, rs in runs.items()})
    argv = sys.argv[1:] if Path(sys.argv[0]).stem in ("fedsa", "cli") else []
    if "compare" not in argv[:2]:  # called as a function (tests, notebooks): rebuild it
        argv = ["compare", args.config, *args.overrides, "--algorithms", args.algorithms]
        argv += ["--seeds", args.seeds] * (args.seeds is not None) + ["--out", args.out]
        argv += ["--overwrite"] * args.overwrite
    command = shlex.join(["fedsa", *argv])
    paths = write_report(out, rows, runs, command, config=Path(args.config).name)
    table = format_table(rows) + (
        "\nmean acc: unweighted mean over clients of final-round accuracy on each client's own "
        "shard (± std over seeds);\nmajority: the same for always predicting the client's "
        "majority training label; gain: accuracy minus that prior;\nbal. acc: balanced "
        "accuracy (mean recall over the labels present), a majority predictor's is chance."
    )
    (out / "table.txt").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"report: {paths['markdown']} and {paths['html']}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """``fedsa list``: algorithms, adapter variants, tasks and model aliases."""
    from fedsa.catalogue import catalogue

    for title, rows in catalogue():
        print(title)
        for name, text in rows:
            print(f"  {name:<12} {text}")
    return 0


def cmd_flower(args: argparse.Namespace) -> int:
    """``fedsa flower ...``: the Flower backend (module loaded only when used)."""
    from fedsa.flower.cli import main as flower_main

    return flower_main(args.args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    p = argparse.ArgumentParser(prog="fedsa", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run one federated experiment")
    r.add_argument("config", nargs="?", help="TOML config file (optional with --resume)")
    r.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. algorithm=fedit")
    r.add_argument("--out", help="run directory to create")
    r.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    r.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue RUN_DIR from its newest valid checkpoint (same config required)",
    )
    r.set_defaults(func=cmd_run)

    c = sub.add_parser(
        "compare", help="run several algorithms on the same data and seeds, and write a report"
    )
    c.add_argument("config", help="TOML config file")
    c.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    c.add_argument("--algorithms", default="fedit,ffa-lora,fedsa-lora", help="comma-separated")
    c.add_argument(
        "--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2 (default: the config's)"
    )
    c.add_argument(
        "--out",
        required=True,
        help="directory for the report and the run directories <algorithm>/seed_<s>/",
    )
    c.add_argument("--overwrite", action="store_true", help="rerun even finished runs")
    c.set_defaults(func=cmd_compare)

    ls = sub.add_parser("list", help="list algorithms, variants, tasks and model aliases")
    ls.set_defaults(func=cmd_list)

    fl = sub.add_parser(
        "flower",
        help="run on Flower's Deployment Engine (needs fedsa[flower])",
        description="fedsa flower COMMAND ...: local, run, superlink, supernode, register, "
        "bundle; `fedsa flower COMMAND -h` for its options (docs/deployment.md)",
    )
    fl.add_argument("args", nargs=argparse.REMAINDER, help="COMMAND and its arguments")
    fl.set_defaults(func=cmd_flower)
    add_report_commands(sub)
    add_use_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedsa`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command != "list":
            _quiet_libraries()
        code: int = args.func(args)
        return code
    except FedsaError as exc:
        print(f"fedsa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedsa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
