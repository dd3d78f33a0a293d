"""Packed ArrayRecords: every tensor of a record in one Flower ``Array``, in safetensors format.

All the tensors of a record travel *packed*: one Flower ``Array`` (a 1-D ``uint8`` array) holding
them in safetensors format, names and order kept (no pickle anywhere), so the server sees the
same named dict the in-process engine does. Why one array: flwr 1.42 moves a message as a tree of
objects, one request per object on every hop (ServerApp -> SuperLink -> SuperNode -> ClientApp and
back), and an ``Array`` is two objects (the array and its chunk). With one ``Array`` per tensor, a
MiniLM upload of 24 LoRA factors was 51 objects, so 51 requests per hop, and the SuperLink spent
about half a core serving them on a loopback federation (``docs/benchmarks.md``, Flower); packed,
it is 5. Records with one ``Array`` per tensor (what earlier versions sent) are still read.

This module imports no torch (the thin ClientApp uses it); :mod:`fedsa.flower.codec` adds the
torch side.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import safetensors.numpy as st_numpy
from flwr.app import Array, ArrayRecord
from safetensors import SafetensorError

#: The name of the one ``Array`` of a packed record.
PACKED = "fedsa-safetensors"

#: safetensors sorts names; the sender's order rides in the header's metadata under this key.
ORDER = "fedsa-order"


def packed_record(payload: bytes) -> ArrayRecord:
    """A record of one ``Array``: the safetensors bytes ``payload`` as a 1-D ``uint8`` array."""
    return ArrayRecord({PACKED: Array(np.frombuffer(payload, dtype=np.uint8))})


def packed_payload(record: ArrayRecord) -> bytes | None:
    """The packed bytes of ``record``; None for a record with one ``Array`` per tensor.

    Raises:
        ValueError: a packed array beside other arrays, or not a 1-D ``uint8`` array.
    """
    if PACKED not in record:
        return None
    if len(record) != 1:
        raise ValueError(f"a packed record holds only {PACKED!r}, got {sorted(record)}")
    array = record[PACKED]
    if array.dtype != "uint8" or len(array.shape) != 1:
        raise ValueError(f"{PACKED!r} must be a 1-D uint8 array, got {array.dtype} {array.shape}")
    return bytes(array.numpy().data)


def _header(payload: bytes) -> dict[str, Any]:
    """The safetensors header: ``{name: {dtype, shape, data_offsets}, "__metadata__": {...}}``."""
    size = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8 : 8 + size])
    if not isinstance(header, dict):
        raise ValueError("the safetensors header is not a JSON object")
    return header


def _order(payload: bytes, names: list[str]) -> list[str]:
    """The sender's tensor order from the safetensors header (sorted names if absent)."""
    meta = _header(payload).get("__metadata__") or {}
    order = json.loads(meta.get(ORDER, "[]"))
    return order if isinstance(order, list) and sorted(order) == sorted(names) else names


def unpack_payload(payload: bytes, load: Callable[[bytes], dict[str, Any]]) -> dict[str, Any]:
    """The named tensors in ``payload``, read by ``load`` (safetensors' numpy or torch), in order.

    Raises:
        ValueError: the bytes are not safetensors (truncated, corrupted, not a header).
    """
    try:
        tensors = load(payload)
        order = _order(payload, list(tensors))
    except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"packed tensors cannot be read: {exc}") from exc
    return {k: tensors[k] for k in order}


def pack_numpy(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """Named numpy arrays as one packed ArrayRecord (the ClientApp's reply, which has no torch)."""
    plain = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    return packed_record(st_numpy.save(plain, metadata={ORDER: json.dumps(list(plain))}))


def unpack_numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    """An ArrayRecord (packed, or one ``Array`` per tensor) as named numpy arrays."""
    payload = packed_payload(record)
    if payload is None:
        return {k: v.numpy() for k, v in record.items()}
    return unpack_payload(payload, st_numpy.load)


def data_nbytes(record: ArrayRecord) -> int:
    """Bytes of tensor data alone in ``record`` (no headers, names or packing), either form.

    This is what the in-process engine counts as a message's size (``numel x element size``).

    Raises:
        ValueError: a malformed packed record.
    """
    payload = packed_payload(record)
    if payload is None:
        return sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in record.values())
    try:
        header = _header(payload)
        spans = [v["data_offsets"] for k, v in header.items() if k != "__metadata__"]
        return sum(int(end) - int(begin) for begin, end in spans)
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"packed tensors cannot be read: {exc}") from exc
