"""TensorBoard: event files in ``RUN_DIR/tensorboard``, written by torch's ``SummaryWriter``.

torch's writer (which needs the ``tensorboard`` package) rather than a hand-written event file:
the format is TensorBoard's, and so are its guarantees.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedsa.tracking.base import Target, require

PACKAGE = "tensorboard"


class TensorBoardTracker:
    """Scalars per round, the config as text, the plots as images."""

    def __init__(self, target: Target) -> None:
        """Open ``RUN_DIR/tensorboard``: emptied for a fresh run, purged past the checkpoint."""
        require(PACKAGE, "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.run_id = ""
        self.run_dir = target.run_dir
        logdir = target.run_dir / "tensorboard"
        if not target.resume_from:  # --overwrite: an earlier run's events would mix in
            shutil.rmtree(logdir, ignore_errors=True)
        # On resume, events of rounds after the checkpoint (a crashed run logged them) are
        # purged, so every round appears once, as the resumed run computed it.
        purge = target.resume_from + 1 if target.resume_from else None
        self.writer = SummaryWriter(log_dir=str(logdir), purge_step=purge)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The config as a JSON block in the Text tab (TensorBoard has no params table)."""
        text = json.dumps(dict(params), indent=2, sort_keys=True)
        self.writer.add_text("config", "```\n" + text + "\n```", global_step=0)

    def log_round(self, step: int, scalars: Mapping[str, float]) -> None:
        """One ``add_scalar`` per name, at step = round."""
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()

    def log_artifacts(self, paths: Sequence[Path]) -> None:
        """PNG plots as images (``plots/<name>``); other files have no place in TensorBoard."""
        from matplotlib.image import imread

        for path in paths:
            if path.suffix == ".png":
                tag = path.relative_to(self.run_dir).with_suffix("").as_posix()
                self.writer.add_image(tag, imread(path)[..., :3], dataformats="HWC")
        self.writer.flush()

    def close(self, *, failed: bool = False) -> None:
        """Flush and close the event file."""
        self.writer.close()
