"""A client's private tensors on its own node: in ``context.state`` during a run, on disk across.

Flower keeps ``context.state`` for one run only, and ``node_id`` is random per SuperNode start, so
durable state is a safetensors file in a node-local directory keyed by the stable client id from
the node config and by the experiment (:func:`~fedsa.flower.codec.experiment_key`). Writes are
atomic (:func:`fedsa.core.io.save_tensors`): a SuperNode killed mid-write leaves the previous file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from flwr.app import ConfigRecord, Context
from safetensors import safe_open

from fedsa.core.io import load_tensors, save_tensors
from fedsa.core.params import Tensors
from fedsa.flower.codec import from_record, to_record

log = logging.getLogger(__name__)

_TENSORS = "fedsa.private"
_META = "fedsa.private-meta"


def state_path(state_dir: Path, experiment: str, client: str) -> Path:
    """``<state_dir>/<experiment>/client_<id>.safetensors``."""
    return Path(state_dir) / experiment / f"client_{client}.safetensors"


def saved_round(path: Path) -> int:
    """The last round whose training produced the file at ``path`` (0: none)."""
    if not path.exists():
        return 0
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    return int(meta.get("round", "0"))


def load_private(
    context: Context, state_dir: Path | None, experiment: str, client: str, initial: Tensors
) -> Tensors:
    """This client's private tensors: from this run's context, else disk, else ``initial``."""
    meta = context.state.config_records.get(_META)
    if meta is not None and meta.get("experiment") == experiment:
        return from_record(context.state.array_records[_TENSORS])
    if state_dir is not None:
        path = state_path(state_dir, experiment, client)
        if path.exists():
            tensors = load_tensors(path)
            if tensors.keys() != initial.keys():
                raise RuntimeError(
                    f"{path} holds other tensor names than this experiment's private state: "
                    "move it away or give the node another state-dir"
                )
            log.info("client %s: continuing from %s (round %d)", client, path, saved_round(path))
            return tensors
    return dict(initial)


def store_private(
    context: Context,
    state_dir: Path | None,
    experiment: str,
    client: str,
    tensors: Mapping[str, torch.Tensor],
    round_idx: int,
) -> None:
    """Keep ``tensors`` in the run's context and, with a ``state_dir``, atomically on disk."""
    context.state[_TENSORS] = to_record(tensors)
    context.state[_META] = ConfigRecord({"experiment": experiment, "round": round_idx})
    if state_dir is not None:
        meta = {"round": str(round_idx), "client": client, "experiment": experiment}
        save_tensors(state_path(state_dir, experiment, client), tensors, meta)
