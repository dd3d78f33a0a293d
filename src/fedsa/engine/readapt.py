"""A finished run's unseen clients scored at another adaptation budget, without training again.

``eval.adapt_steps`` acts only after the last round: training, aggregation and the seen clients'
numbers never depend on it, and each unseen client adapts from the common initial state with a
seed of its own (:func:`fedsa.engine.holdout.adapt`). So a finished run with
``eval.holdout_clients`` can be scored again at any budget from its final checkpoint, and the
result is the run a fresh ``eval.adapt_steps = N`` would have produced, wall time aside
(``tests/test_readapt.py`` holds the two equal). :func:`readapt` writes it as a run directory of
that config, which ``fedsa compare`` then reuses like any finished run: a sweep over adaptation
budgets (issue 17, d) costs one training per method and seed instead of one per budget.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from fedsa.config.load import config_from_dict
from fedsa.config.schema import RunConfig
from fedsa.config.validation import validate
from fedsa.core.errors import CheckpointError, ConfigError
from fedsa.core.io import atomic_write_json
from fedsa.engine.checkpoint import Checkpoint, Checkpointer
from fedsa.engine.holdout import score_unseen
from fedsa.engine.prepare import prepare
from fedsa.engine.results import RunDir, read_summary
from fedsa.engine.server_step import ServerState
from fedsa.engine.summary import build_summary

_REWRITTEN = ("config.json", "metrics.jsonl", "summary.json", "checkpoints")
"""What the new directory gets afresh; everything else of the source is copied as it is."""


def _source(src: Path) -> tuple[RunConfig, dict[str, Any], Checkpoint]:
    """The finished source run: its config, summary and final checkpoint (checked)."""
    cfg = config_from_dict(RunDir.reopen(src).read_config())
    if not cfg.eval.holdout_clients:
        raise ConfigError(
            f"{str(src)!r} has no unseen clients (eval.holdout_clients = 0): run it with "
            "eval.holdout_clients=N to have clients to adapt"
        )
    if not (src / "summary.json").is_file():
        raise ConfigError(f"{str(src)!r} is not finished (no summary.json): finish it first")
    rounds = cfg.federation.rounds
    try:
        ckpt = Checkpointer(src, cfg).read(rounds)
    except CheckpointError as exc:
        raise ConfigError(
            f"{str(src)!r} has no valid final checkpoint (round {rounds}: {exc}): rerun it "
            "with checkpoint.every > 0"
        ) from None
    return cfg, read_summary(src), ckpt


def readapt(src: Path, steps: int, out: Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Write to ``out`` the run ``src`` would have been with ``eval.adapt_steps = steps``.

    The directory is built beside ``out`` and renamed into place, so a failure leaves neither
    ``src`` nor an earlier run in ``out`` changed. Returns the new summary.

    Raises:
        ConfigError: ``src`` is not a finished run with unseen clients and a final checkpoint,
            ``steps`` is negative, or ``out`` holds a run (without ``overwrite``) or is ``src``.
    """
    src, out = Path(src), Path(out)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"--steps {steps!r}: give an integer >= 0 (local steps of adaptation)")
    if out.resolve() == src.resolve():
        raise ConfigError(f"--out {str(out)!r} is the source run: choose another directory")
    src_cfg, src_summary, ckpt = _source(src)
    RunDir.check(out, overwrite=overwrite)
    cfg = dataclasses.replace(src_cfg, eval=dataclasses.replace(src_cfg.eval, adapt_steps=steps))
    validate(cfg)
    start = time.perf_counter()
    fed = prepare(cfg)
    unseen = score_unseen(fed, ServerState.restore(ckpt.shared, ckpt.server))
    assert unseen is not None  # holdout_clients > 0 was checked
    history = [*ckpt.history[:-1], {**ckpt.history[-1], "eval_unseen": unseen}]
    seconds = time.perf_counter() - start
    summary = build_summary(fed, history, float(src_summary["wall_s"]) + seconds)
    summary["readapted_from"] = {
        "run": str(src),
        "adapt_steps": src_cfg.eval.adapt_steps,
        "seconds": seconds,
    }

    tmp = out.parent / f".{out.name}.readapt-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp, ignore=lambda d, names: _REWRITTEN if Path(d) == src else [])
        atomic_write_json(tmp / "config.json", cfg.to_dict())
        run_dir = RunDir.reopen(tmp)
        run_dir.rewrite_metrics(history)
        Checkpointer(tmp, cfg).save(dataclasses.replace(ckpt, history=history))
        run_dir.write_summary(summary)
        if out.exists():  # RunDir.check allowed it: empty, or a run being overwritten
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def describe(summary: dict[str, Any]) -> str:
    """One line for the CLI: the unseen clients' mean accuracy at the new budget."""
    unseen = summary.get("final_unseen", {})
    return json.dumps(
        {
            "adapt_steps": unseen.get("adapt_steps"),
            "unseen_accuracy_mean": unseen.get("accuracy_mean"),
            "seen_accuracy_mean": summary["final"].get("accuracy_mean"),
        }
    )
