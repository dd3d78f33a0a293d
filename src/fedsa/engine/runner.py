"""One complete run on disk: prepare, loop, checkpoints, resume, results.

:func:`run` is what ``fedsa run`` calls. It validates everything that depends on user input before
it touches the output directory, resumes from the newest valid checkpoint when asked, and writes
the run directory described in :mod:`fedsa.engine.results`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedsa.config.load import config_diff
from fedsa.config.schema import NOT_COMPUTED, RunConfig
from fedsa.core.errors import ConfigError
from fedsa.core.io import save_tensors
from fedsa.engine.centralized import run_centralized
from fedsa.engine.checkpoint import Checkpoint, Checkpointer
from fedsa.engine.prepare import Federation, prepare
from fedsa.engine.results import RunDir
from fedsa.engine.simulation import ClientCallback, ClientEvent, RoundCallback, run_rounds
from fedsa.engine.summary import build_summary
from fedsa.privacy.checks import check_in_process
from fedsa.tracking.fanout import chain, check_trackers, open_trackers

log = logging.getLogger(__name__)


def snapshot_writer(run_dir: RunDir, rounds: tuple[int, ...]) -> ClientCallback:
    """An ``on_client`` observer saving each client's tensors before and after local training.

    Keys are ``before.<name>`` (what the client started from: global shared + own private) and
    ``after.<name>`` (its upload + new private state, before aggregation).
    """
    wanted = set(rounds)

    def write(event: ClientEvent) -> None:
        if event.round not in wanted:
            return
        before = {**event.received_shared, **event.received_private}
        after = {**event.result.upload, **event.result.private}
        tensors = {f"before.{k}": v for k, v in before.items()}
        tensors.update({f"after.{k}": v for k, v in after.items()})
        path = run_dir.path / "snapshots" / f"round_{event.round}" / f"{event.client}.safetensors"
        save_tensors(path, tensors)

    return write


def _resume_point(cfg: RunConfig, out: Path) -> tuple[RunDir, Checkpoint | None]:
    """Open ``out`` for resuming ``cfg``: same config required, newest valid checkpoint found.

    Tracking settings (:data:`~fedsa.config.schema.NOT_COMPUTED`) may differ: a resumed run can
    be logged elsewhere without changing what it computes.
    """
    run_dir = RunDir.reopen(out)
    differing = config_diff(run_dir.read_config(), cfg.to_dict(), NOT_COMPUTED)
    if differing:
        raise ConfigError(
            f"cannot resume {str(out)!r} with another config: {', '.join(differing[:6])} "
            "differ; resume with the run's own config (omit CONFIG) or start a new --out"
        )
    ckpt = Checkpointer(out, cfg).latest()
    if ckpt is None:
        log.warning("no checkpoint in %s: restarting from round 1", out)
    return run_dir, ckpt


def run(
    cfg: RunConfig,
    out: Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    on_round: RoundCallback | None = None,
    on_ready: Callable[[Federation], None] | None = None,
) -> dict[str, Any]:
    """Prepare, run every round and write the run directory; returns the summary.

    Everything that can fail on user input (config, data, model, the output path) is checked
    before anything in ``out`` is changed, so a mistake never costs an earlier run's files.

    Args:
        cfg: the resolved configuration.
        out: the run directory.
        overwrite: replace an earlier run in ``out``.
        resume: continue the run in ``out`` from its newest valid checkpoint.
        on_round: called with each round's metrics record (before the trackers of
            ``[tracking] report_to`` log it).
        on_ready: called once the data and model are prepared.
    """
    start = time.perf_counter()
    check_trackers(cfg)  # a missing tracker package fails here, before anything is written
    check_in_process(cfg)
    ckpt = None
    if resume:
        run_dir, ckpt = _resume_point(cfg, out)
    else:
        RunDir.check(out, overwrite=overwrite)
    fed = prepare(cfg)
    if resume:
        run_dir.rewrite_metrics(ckpt.history if ckpt else [])
        run_dir.drop_generations_after(ckpt.round if ckpt else 0)
    else:
        run_dir = RunDir(out, overwrite=overwrite)
        run_dir.write_config(cfg.to_dict())
    if on_ready is not None:
        on_ready(fed)
    observer = snapshot_writer(run_dir, cfg.analysis.snapshot_rounds)
    loop = run_centralized if fed.algorithm.pooled else run_rounds
    with open_trackers(cfg, run_dir.path, resume_from=ckpt.round if ckpt else 0) as trackers:
        state, store, history = loop(
            fed,
            run_dir,
            chain(on_round, trackers.on_round),
            observer,
            resume=ckpt,
            checkpointer=Checkpointer(out, cfg),
        )
        run_dir.write_tensors(state.shared, store, state.extra_tensors())
        summary = build_summary(fed, history, time.perf_counter() - start)
        run_dir.write_summary(summary)
        trackers.finish()
    log.info("run finished: mean client accuracy %.4f", summary["final"]["accuracy_mean"])
    return summary
