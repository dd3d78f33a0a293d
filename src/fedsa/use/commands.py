"""The ``fedsa export``, ``predict`` and ``adapt`` commands (registered by :mod:`fedsa.cli`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fedsa.core.errors import ConfigError
from fedsa.core.io import atomic_write_bytes


def cmd_export(args: argparse.Namespace) -> int:
    """``fedsa export RUN_DIR (--client ID | --all-clients | --global) --out DIR [--merge]``."""
    from fedsa.use.export import export
    from fedsa.use.saved import SavedRun

    run = SavedRun(Path(args.run_dir))
    written = export(
        run,
        Path(args.out),
        client=args.client,
        all_clients=args.all_clients,
        global_model=args.global_model,
        merge=args.merge,
        overwrite=args.overwrite,
    )
    kind = "merged model" if args.merge else "PEFT adapter"
    for path in written:
        print(f"wrote {kind} {path}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``fedsa predict RUN_DIR --client ID --input FILE [--out FILE]``: JSONL predictions."""
    from fedsa.use.inputs import parse_items, read_source
    from fedsa.use.predict import check_predictable, input_fields, predict
    from fedsa.use.saved import SavedRun

    for name in ("batch_size", "max_new_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {value}: give a positive integer")
    run = SavedRun(Path(args.run_dir))
    client = run.check_client(args.client)
    check_predictable(run)
    items = parse_items(read_source(args.input), args.format, input_fields(run), args.input)
    records = predict(
        run,
        client,
        items,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
    )
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if args.out is None:
        sys.stdout.write(text)
    else:
        atomic_write_bytes(Path(args.out), text.encode("utf-8"))
        print(f"wrote {len(records)} predictions to {args.out}", file=sys.stderr)
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    """``fedsa adapt RUN_DIR --steps 10,50 --out DIR_{steps}``: unseen clients, other budgets."""
    from fedsa.engine.readapt import describe, readapt

    try:
        budgets = [int(x) for x in args.steps.split(",") if x.strip()]
    except ValueError:
        budgets = []
    if not budgets or len(set(budgets)) != len(budgets) or min(budgets) < 0:
        raise ConfigError(f"--steps {args.steps!r}: give distinct integers >= 0, e.g. 10,50")
    if len(budgets) > 1 and "{steps}" not in args.out:
        raise ConfigError(
            f"--out {args.out!r} names one directory for {len(budgets)} budgets: put {{steps}} "
            "in it, e.g. runs/x/adapt{steps}"
        )
    for steps in budgets:
        out = Path(args.out.replace("{steps}", str(steps)))
        summary = readapt(Path(args.run_dir), steps, out, overwrite=args.overwrite)
        print(f"{out}: {describe(summary)}")
    return 0


def add_use_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``export``, ``predict`` and ``adapt``."""
    e = sub.add_parser(
        "export",
        help="write a client's personalised model as a PEFT adapter (or a merged model)",
        description="Write a run's model in PEFT's format (adapter_config.json, "
        "adapter_model.safetensors, model card), or with --merge a plain transformers model.",
    )
    e.add_argument("run_dir", help="a finished run directory")
    who = e.add_mutually_exclusive_group(required=True)
    who.add_argument("--client", help="the client id whose personalised model to export")
    who.add_argument("--all-clients", action="store_true", help="one folder per client")
    who.add_argument(
        "--global", dest="global_model", action="store_true", help="the shared model, if any"
    )
    e.add_argument("--out", required=True, help="folder to write (see --overwrite)")
    e.add_argument("--merge", action="store_true", help="merge_and_unload: a transformers model")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    e.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "predict",
        help="a client's predictions on new inputs, as JSONL",
        description="Labels with probabilities (classifiers) or generated text (causal LMs) "
        "for each input of a TSV (with header), JSONL, or one-text-a-line file.",
    )
    p.add_argument("run_dir", help="a finished run directory")
    p.add_argument("--client", required=True, help="whose personalised model to use")
    p.add_argument("--input", required=True, help="TSV, JSONL or text file; - for stdin")
    p.add_argument("--format", default="auto", choices=["auto", "tsv", "jsonl", "text"])
    p.add_argument("--out", default=None, help="JSONL file to write (default: stdout)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's eval one")
    p.add_argument("--max-new-tokens", type=int, default=None, help="causal LMs (default: run's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.set_defaults(func=cmd_predict)

    a = sub.add_parser(
        "adapt",
        help="score a finished run's unseen clients at other eval.adapt_steps, without training",
        description="Write, for each budget, the run directory a fresh run with "
        "eval.adapt_steps=N would have produced: the unseen clients (eval.holdout_clients) "
        "adapt from the run's final checkpoint; `fedsa compare` reuses the result.",
    )
    a.add_argument("run_dir", help="a finished run with eval.holdout_clients > 0")
    a.add_argument("--steps", required=True, help="comma-separated budgets, e.g. 10,50")
    a.add_argument("--out", required=True, help="run directory to write; {steps} is replaced")
    a.add_argument("--overwrite", action="store_true", help="replace a run in --out")
    a.set_defaults(func=cmd_adapt)
