"""Weights & Biases: ``wandb.init(dir=RUN_DIR)``, offline unless ``tracking.wandb_mode`` is online.

Offline runs land in ``RUN_DIR/wandb/offline-run-*``; ``wandb sync`` uploads them later. The run
object's own methods are used, never ``wandb.log``'s global run, so nothing else is disturbed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedsa.tracking.base import Target, require

PACKAGE = "wandb"


class WandbTracker:
    """The config as W&B config (nested), history per round, files saved into the run."""

    def __init__(self, target: Target) -> None:
        """Start (or, with the id kept from before a resume, continue) the W&B run."""
        wandb = require(PACKAGE, "wandb")
        self.run_dir = target.run_dir
        self.run_id = target.previous_id or uuid.uuid4().hex[:12]
        settings = wandb.Settings(
            silent=True,
            console="off",  # the run's own stdout stays the terminal's
            save_code=False,
            disable_git=True,
            x_disable_stats=True,  # no background system-metrics sampling
        )
        self.run: Any = wandb.init(
            project=target.settings.project,
            name=target.name,
            id=self.run_id,
            resume="allow",
            dir=str(target.run_dir),
            mode=target.settings.wandb_mode,
            tags=[f"{k}={v}" for k, v in target.tags.items()],
            settings=settings,
        )

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The nested config dict, as W&B shows it (``adapter.r`` and so on)."""
        self.run.config.update(dict(params), allow_val_change=True)

    def log_round(self, step: int, scalars: Mapping[str, float]) -> None:
        """One history row per round, at step = round."""
        self.run.log(dict(scalars), step=step)

    def log_artifacts(self, paths: Sequence[Path]) -> None:
        """Copied into the run's files, under their path relative to the run directory."""
        for path in paths:
            self.run.save(str(path), base_path=str(self.run_dir), policy="now")

    def close(self, *, failed: bool = False) -> None:
        """Finish the run (exit code 1 when it failed)."""
        self.run.finish(exit_code=1 if failed else 0)
