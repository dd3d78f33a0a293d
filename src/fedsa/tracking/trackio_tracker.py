"""trackio: a local SQLite project (``$TRACKIO_DIR``, default ``~/.cache/huggingface/trackio``).

trackio picks its storage folder from ``TRACKIO_DIR`` when it is first imported, so fedsa cannot
put it under RUN_DIR without changing the process environment behind the user's back; set
``TRACKIO_DIR`` yourself to keep it elsewhere. Its ``init`` and ``finish`` print progress lines;
they go to stderr so that fedsa's own result line stays alone on stdout.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedsa.tracking.base import Target, flatten, require

PACKAGE = "trackio"


class TrackioTracker:
    """The flattened config, scalars per round, files as trackio artefacts."""

    def __init__(self, target: Target) -> None:
        """Start the run ``target.name`` in project ``tracking.project`` (a resume continues it)."""
        self.trackio: Any = require(PACKAGE, "trackio")
        with contextlib.redirect_stdout(sys.stderr):
            self.run: Any = self.trackio.init(
                project=target.settings.project,
                name=target.name,
                resume="allow",
                embed=False,
                auto_log_gpu=False,
                auto_log_cpu=False,
            )
        self.run_id = str(self.run.id)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The config as the run's config, flattened to dotted keys."""
        self.run.config.update(flatten(params))

    def log_round(self, step: int, scalars: Mapping[str, float]) -> None:
        """One log call per round, at step = round."""
        self.run.log(dict(scalars), step=step)

    def log_artifacts(self, paths: Sequence[Path]) -> None:
        """Each file as an artefact of the run (type ``plot`` for PNGs, else ``file``)."""
        for path in paths:
            self.run.log_artifact(str(path), type="plot" if path.suffix == ".png" else "file")

    def close(self, *, failed: bool = False) -> None:
        """Flush and finish the run.

        ``trackio.finish`` also forgets it as the current run, so that trackio's exit handler
        does not finish it a second time.
        """
        with contextlib.redirect_stdout(sys.stderr):
            self.trackio.finish()
