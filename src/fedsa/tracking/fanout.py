"""The trackers of one run: checked before it starts, fed every round, closed however it ends.

A tracker mirrors ``metrics.jsonl``; it must not cost the run. So the packages are imported (and a
missing one reported as a one-line ConfigError) before the output directory is touched, and a
tracker that raises while logging is dropped with a warning instead of killing a long run: the
metrics stay on disk and can be logged again. Each tracker's run id is kept in
``RUN_DIR/tracking.json`` so that ``fedsa run --resume`` continues the same tracker run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from fedsa.config.schema import RunConfig
from fedsa.core.errors import ConfigError
from fedsa.core.io import atomic_write_json
from fedsa.tracking.base import (
    Target,
    Tracker,
    params_of,
    require,
    round_scalars,
    run_name,
    run_tags,
)

log = logging.getLogger(__name__)

IDS = "tracking.json"
"""File of the run directory keeping each tracker's run id (for resume)."""
Record = dict[str, Any]


def check_trackers(cfg: RunConfig) -> None:
    """Import every named tracker's library now; a missing one is a one-line ConfigError."""
    for name in cfg.tracking.report_to:
        require(name, name)  # each tracker's name is its package's name


def _backend(name: str) -> Callable[[Target], Tracker]:
    """The tracker class of ``name``, imported only when it is used."""
    if name == "tensorboard":
        from fedsa.tracking.tensorboard_tracker import TensorBoardTracker

        return TensorBoardTracker
    if name == "mlflow":
        from fedsa.tracking.mlflow_tracker import MlflowTracker

        return MlflowTracker
    if name == "wandb":
        from fedsa.tracking.wandb_tracker import WandbTracker

        return WandbTracker
    assert name == "trackio", name
    from fedsa.tracking.trackio_tracker import TrackioTracker

    return TrackioTracker


def _read_ids(run_dir: Path) -> dict[str, str]:
    try:
        data = json.loads((run_dir / IDS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


class Trackers:
    """Fan-out to the enabled trackers; a context manager that always closes them."""

    def __init__(self, cfg: RunConfig, trackers: Mapping[str, Tracker], run_dir: Path) -> None:
        """Wrap already opened trackers (see :func:`open_trackers`)."""
        self.cfg = cfg
        self.trackers = dict(trackers)
        self.run_dir = run_dir

    def _each(self, what: str, call: Callable[[Tracker], None]) -> None:
        """Call every tracker; one that raises is dropped (the run and the others go on)."""
        for name, tracker in list(self.trackers.items()):
            try:
                call(tracker)
            except Exception as exc:  # a tracker's failure must not end the run
                log.warning(
                    "tracking: %s failed to %s (%s); no longer logging to it", name, what, exc
                )
                self.trackers.pop(name)

    def log_params(self) -> None:
        """The resolved config, without the tracking group."""
        params = params_of(self.cfg)
        self._each("log params", lambda t: t.log_params(params))

    def on_round(self, record: Record) -> None:
        """The round callback: the record's scalars at step = round."""
        if self.trackers:
            scalars = round_scalars(record)
            self._each("log a round", lambda t: t.log_round(int(record["round"]), scalars))

    def finish(self) -> None:
        """Draw the run's plots and attach them with ``config.json`` and ``summary.json``."""
        if not self.trackers:
            return
        from fedsa.reports.run_plots import write_run_plots

        paths = write_run_plots(self.run_dir, self.cfg.algorithm, self.cfg.seed)
        paths += [self.run_dir / "config.json", self.run_dir / "summary.json"]
        self._each("log artefacts", lambda t: t.log_artifacts(paths))

    def __enter__(self) -> Trackers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failed = kind is not None
        self._each("close", lambda t: t.close(failed=failed))


def open_trackers(cfg: RunConfig, run_dir: Path, *, resume_from: int = 0) -> Trackers:
    """Open every tracker of ``tracking.report_to`` for the run in ``run_dir`` and log params.

    Args:
        cfg: the resolved config.
        run_dir: the run directory, already created.
        resume_from: the checkpoint's round when resuming (0: a fresh run).
    """
    previous = _read_ids(run_dir) if resume_from else {}
    opened: dict[str, Tracker] = {}
    base = Target(run_dir, run_name(cfg, run_dir), cfg.tracking, resume_from, "", run_tags(cfg))
    try:
        for name in cfg.tracking.report_to:
            target = dataclasses.replace(base, previous_id=previous.get(name, ""))
            try:
                opened[name] = _backend(name)(target)
            except ConfigError:
                raise
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigError(
                    f"tracking.report_to: cannot start {name} ({first}): check its settings "
                    f"in [tracking] or remove {name!r}"
                ) from exc
    except BaseException:
        Trackers(cfg, opened, run_dir).__exit__(ConfigError, None, None)
        raise
    if opened:
        atomic_write_json(run_dir / IDS, {n: t.run_id for n, t in opened.items() if t.run_id})
    trackers = Trackers(cfg, opened, run_dir)
    trackers.log_params()
    return trackers


def chain(*callbacks: Callable[[Record], None] | None) -> Callable[[Record], None]:
    """One round callback calling each given one in order (None entries are skipped)."""
    present = [c for c in callbacks if c is not None]

    def call(record: Record) -> None:
        for callback in present:
            callback(record)

    return call
