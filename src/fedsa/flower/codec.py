"""What crosses the network: named tensors as ArrayRecords, the run config as a ConfigRecord.

Tensors travel packed, one ``Array`` per record (:mod:`fedsa.flower.packing`); names and
order are kept, so the server sees the same named dict the in-process engine does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import safetensors.torch as st_torch
import torch
from flwr.app import ArrayRecord, ConfigRecord

from fedsa.config.load import config_from_dict
from fedsa.config.schema import NOT_COMPUTED, RunConfig, drop_defaults
from fedsa.core.params import Tensors
from fedsa.flower.packing import ORDER, packed_payload, packed_record, unpack_payload

#: Config keys that may change between runs of one experiment without touching private state.
_RUN_ONLY = ("eval", "analysis", *NOT_COMPUTED)  # tracking: where a run is logged, not what it is


def to_record(tensors: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """Named tensors as one packed ArrayRecord (CPU copies, same names and order)."""
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return packed_record(st_torch.save(cpu, metadata={ORDER: json.dumps(list(cpu))}))


def from_record(record: ArrayRecord) -> Tensors:
    """An ArrayRecord (packed, or one ``Array`` per tensor) back as named CPU tensors.

    Raises:
        ValueError: the record is malformed (screening turns this into a rejection).
    """
    payload = packed_payload(record)
    if payload is None:
        return {k: torch.from_numpy(v.numpy().copy()) for k, v in record.items()}
    return unpack_payload(payload, st_torch.load)


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
