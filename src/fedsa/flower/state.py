"""A client's private tensors on its own node: in its state dir, else ``context.state``.

Flower keeps ``context.state`` for one run only, and ``node_id`` is random per SuperNode start, so
durable state is a safetensors file in a node-local directory keyed by the stable client id from
the node config and by the experiment (:func:`~fedsa.flower.codec.experiment_key`). Writes are
atomic (:func:`fedsa.store.save_tensors`): a process killed mid-write leaves the previous file.

The file before the latest write is kept as ``client_<id>.prev.safetensors``, and each file
records the Flower run and round that produced it. That makes a retried message safe: when the
resident worker dies after saving round ``t`` but before replying, whoever handles the message
again (a restarted worker or the in-process fallback) sees that the current file is this run's
round ``t`` already and trains from the previous one, so no round is applied twice and none lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from flwr.app import ConfigRecord, Context
from safetensors import safe_open

from fedsa.core.io import atomic_write_bytes, load_tensors, save_tensors
from fedsa.core.params import Tensors
from fedsa.flower.codec import from_record, to_record

log = logging.getLogger(__name__)

_TENSORS = "fedsa.private"
_META = "fedsa.private-meta"


def state_path(state_dir: Path, experiment: str, client: str) -> Path:
    """``<state_dir>/<experiment>/client_<id>.safetensors``."""
    return Path(state_dir) / experiment / f"client_{client}.safetensors"


def generations_path(state_dir: Path, experiment: str, client: str, round_idx: int) -> Path:
    """Where a site keeps what its model answered in round ``round_idx``'s evaluation.

    ``<state_dir>/<experiment>/generations/round_<t>/<id>.jsonl``: prompts and answers are the
    site's data, so they stay on its node (``fedsa flower local`` copies them into the run dir).
    """
    return Path(state_dir) / experiment / "generations" / f"round_{round_idx}" / f"{client}.jsonl"


def previous_path(state_dir: Path, experiment: str, client: str) -> Path:
    """The file :func:`state_path` held before its latest write."""
    return Path(state_dir) / experiment / f"client_{client}.prev.safetensors"


def saved_meta(path: Path) -> dict[str, str]:
    """The metadata of a state file (``round``, ``run``, ``client``, ``experiment``); {} if none."""
    if not path.exists():
        return {}
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def saved_round(path: Path) -> int:
    """The last round whose training produced the file at ``path`` (0: none)."""
    return int(saved_meta(path).get("round", "0"))


def pick_state(
    state_dir: Path, experiment: str, client: str, run_id: int, round_idx: int, training: bool
) -> Path | None:
    """The state file a message of (``run_id``, ``round_idx``) must start from, if any.

    Training in round ``t`` starts from the newest file not produced by this run's round ``t`` or
    later; evaluation of round ``t`` from the newest not produced after round ``t`` of this run.
    A file of another run (a resumed or repeated experiment) is always a valid start.
    """
    limit = round_idx if training else round_idx + 1
    for path in (
        state_path(state_dir, experiment, client),
        previous_path(state_dir, experiment, client),
    ):
        meta = saved_meta(path)
        if not meta:
            continue
        if meta.get("run") == str(run_id) and int(meta.get("round", "0")) >= limit:
            log.info("client %s: %s is this run's round %s already: not reused", client, path,
                     meta.get("round"))  # fmt: skip
            continue
        return path
    return None


def load_private(
    context: Context | None,
    state_dir: Path | None,
    experiment: str,
    client: str,
    initial: Tensors,
    *,
    run_id: int = 0,
    round_idx: int = 0,
    training: bool = True,
) -> Tensors:
    """This client's private tensors: from the state dir, else this run's context, else initial."""
    if state_dir is None:
        meta = context.state.config_records.get(_META) if context is not None else None
        if context is not None and meta is not None and meta.get("experiment") == experiment:
            return from_record(context.state.array_records[_TENSORS])
        return dict(initial)
    path = pick_state(state_dir, experiment, client, run_id, round_idx, training)
    if path is None:
        return dict(initial)
    tensors = load_tensors(path)
    if tensors.keys() != initial.keys():
        raise RuntimeError(
            f"{path} holds other tensor names than this experiment's private state: "
            "move it away or give the node another state-dir"
        )
    log.debug("client %s: private state from %s (round %d)", client, path, saved_round(path))
    return tensors


def _keep_previous(current: Path, previous: Path) -> None:
    """Make ``previous`` a copy of ``current`` (a hard link where possible), atomically."""
    tmp = previous.with_name(f".{previous.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(current, tmp)
        os.replace(tmp, previous)
    except OSError:
        atomic_write_bytes(previous, current.read_bytes())


def store_private(
    context: Context | None,
    state_dir: Path | None,
    experiment: str,
    client: str,
    tensors: Mapping[str, torch.Tensor],
    round_idx: int,
    run_id: int = 0,
) -> None:
    """Keep ``tensors`` atomically in the state dir, or (without one) in the run's context."""
    if state_dir is None:
        if context is not None:
            context.state[_TENSORS] = to_record(tensors)
            context.state[_META] = ConfigRecord({"experiment": experiment, "round": round_idx})
        return
    current = state_path(state_dir, experiment, client)
    meta = saved_meta(current)
    if meta and (meta.get("run"), meta.get("round")) != (str(run_id), str(round_idx)):
        _keep_previous(current, previous_path(state_dir, experiment, client))
    new = {"round": str(round_idx), "client": client, "experiment": experiment, "run": str(run_id)}
    save_tensors(current, tensors, new)
