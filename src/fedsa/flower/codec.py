"""What crosses the network: named tensors as ArrayRecords, the run config as a ConfigRecord.

Tensors go through numpy's ``.npy`` format inside Flower's ``Array`` (no pickle: Flower loads with
``allow_pickle=False``); names and order are kept, so the server sees the same named dict the
in-process engine does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord

from fedsa.config.load import config_from_dict
from fedsa.config.schema import NOT_COMPUTED, RunConfig, drop_defaults
from fedsa.core.params import Tensors

#: Config keys that may change between runs of one experiment without touching private state.
_RUN_ONLY = ("eval", "analysis", *NOT_COMPUTED)  # tracking: where a run is logged, not what it is


def to_record(tensors: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """Named tensors as an ArrayRecord (CPU copies, same names and order)."""
    return ArrayRecord.from_torch_state_dict({k: v.detach().cpu() for k, v in tensors.items()})


def from_record(record: ArrayRecord) -> Tensors:
    """An ArrayRecord back as named CPU tensors (independent of the record's buffers)."""
    return {k: torch.from_numpy(v.numpy().copy()) for k, v in record.items()}


def record_bytes(record: ArrayRecord) -> int:
    """Bytes the record carries, as Flower counts them (array data with ``.npy`` headers + keys)."""
    return int(record.count_bytes())


def config_record(cfg: RunConfig, **extra: int | float | bool | str) -> ConfigRecord:
    """The resolved run config (as JSON) plus per-message values such as the round."""
    return ConfigRecord({"fedsa-config": json.dumps(cfg.to_dict()), **extra})


def config_from_record(record: ConfigRecord | Mapping[str, Any]) -> RunConfig:
    """The run config a server sent (validated again on this side)."""
    tree: dict[str, Any] = json.loads(str(record["fedsa-config"]))
    return config_from_dict(tree)


def experiment_key(cfg: RunConfig) -> str:
    """A fingerprint of everything that shapes a client's private state, but not the run length.

    Two runs with the same key continue each other's private state (a second run of more rounds
    picks up where the first stopped); any other change starts from fresh initial tensors.
    """
    tree = cfg.to_dict()
    tree["federation"] = {k: v for k, v in tree["federation"].items() if k != "rounds"}
    for key in _RUN_ONLY:
        tree.pop(key, None)
    drop_defaults(tree)  # keys made before the privacy group existed still hold
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]
