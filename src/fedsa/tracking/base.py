"""What every tracker backend gets and does: the protocol, the scalars of a round, the params.

The translation from fedsa's records to tracker names lives here, once, so that the four backends
log the same names and values and differ only in how they call their library.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from fedsa.config.schema import NOT_COMPUTED, RunConfig, TrackingConfig
from fedsa.core.errors import ConfigError

EVAL_KEYS = ("accuracy_mean", "accuracy_min", "accuracy_std", "accuracy_weighted", "loss_mean")
"""Over-client statistics of an evaluated round, logged as ``eval/<key>``."""
COMM_KEYS = ("bytes_up", "bytes_down", "cum_bytes_up", "cum_bytes_down")
"""Communication totals of a round, logged as ``comm/<key>``."""


class Tracker(Protocol):
    """One experiment tracker's run, open for the duration of a fedsa run."""

    run_id: str
    """The tracker's id of this run ('' where it has none), kept so a resume continues it."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record the resolved config (nested, as :meth:`RunConfig.to_dict` gives it)."""

    def log_round(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record one round's scalars (:func:`round_scalars`) at step ``step`` (the round)."""

    def log_artifacts(self, paths: Sequence[Path]) -> None:
        """Attach files of the run directory, keeping their path relative to it."""

    def close(self, *, failed: bool = False) -> None:
        """Flush and end the run; ``failed`` marks a run that ended by an exception."""


@dataclass(frozen=True)
class Target:
    """Where and under which names a backend logs one fedsa run."""

    run_dir: Path
    """The fedsa run directory (local stores and offline files go below it)."""
    name: str
    """The run's display name in the tracker."""
    settings: TrackingConfig
    """The ``[tracking]`` group."""
    resume_from: int
    """0 for a fresh run; else the round of the checkpoint a resume continues after."""
    previous_id: str
    """The tracker's run id from before a resume ('' if none): continue that run."""
    tags: Mapping[str, str]
    """Algorithm, variant, task and seed, for filtering runs in the tracker's UI."""


def require(package: str, backend: str) -> ModuleType:
    """Import a tracker's library, or say in one line how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ConfigError(
            f"tracking.report_to includes {backend!r} but {package} is not installed: "
            f"pip install 'fedsa[{backend}]' (or remove {backend!r} from tracking.report_to)"
        ) from None


def run_name(cfg: RunConfig, run_dir: Path) -> str:
    """``tracking.run_name``, else the directory's name (``<algorithm>/seed_<s>`` in compare)."""
    if cfg.tracking.run_name:
        return cfg.tracking.run_name
    path = run_dir.resolve()
    return f"{path.parent.name}/{path.name}" if path.name.startswith("seed_") else path.name


def run_tags(cfg: RunConfig) -> dict[str, str]:
    """The few settings people filter runs by, as tracker tags."""
    return {
        "algorithm": cfg.algorithm,
        "adapter.variant": cfg.adapter.variant,
        "data.task": cfg.data.task,
        "seed": str(cfg.seed),
    }


def params_of(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config without the groups that change nothing computed (tracking itself).

    Leaving them out keeps the params of a resumed run equal to those first logged, which MLflow
    requires, and keeps runs comparable whatever they were logged to.
    """
    return {k: v for k, v in cfg.to_dict().items() if k not in NOT_COMPUTED}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys to string values (lists as JSON), for trackers whose params are flat strings."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return flat


def round_scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The tracker scalars of one round's metrics record (see docs/tracking.md for the names).

    Server-level: ``eval/*`` (evaluated rounds only), ``train/loss``, ``comm/*``,
    ``round/skipped``; per client: ``clients/<id>/accuracy``, ``clients/<id>/loss`` (evaluation)
    and ``clients/<id>/train_loss``. Missing values (no client trained) are left out, not zero.
    """
    out: dict[str, float] = {}
    evaluation = record.get("eval")
    if evaluation:
        out.update({f"eval/{k}": float(evaluation[k]) for k in EVAL_KEYS if k in evaluation})
        for cid, m in evaluation.get("clients", {}).items():
            out[f"clients/{cid}/accuracy"] = float(m["accuracy"])
            if "loss" in m:
                out[f"clients/{cid}/loss"] = float(m["loss"])
    if record.get("train_loss") is not None:
        out["train/loss"] = float(record["train_loss"])
    for cid, loss in (record.get("train_loss_per_client") or {}).items():
        if loss is not None:
            out[f"clients/{cid}/train_loss"] = float(loss)
    out.update({f"comm/{k}": float(record[k]) for k in COMM_KEYS if k in record})
    out["round/skipped"] = float(bool(record.get("skipped")))
    return out
