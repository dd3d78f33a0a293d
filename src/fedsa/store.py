"""Per-client private state and atomic persistence in safetensors and JSON (no code on load).

Every client owns its private tensors (FedSA's ``B`` and head). The store hands out copies and
takes copies back, so no tensor object is ever shared between two clients or with the model: the
classic defect of one model object whose "local" ``B`` silently leaks from client to client
cannot happen. A client that never participated holds the common initial values.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from fedsa.params import Tensors, clone


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``.

    A crash leaves either the old file or the new one, never a truncated mix.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], meta: dict[str, str] | None = None
) -> None:
    """Atomically write named tensors as safetensors (an empty dict gives a valid empty file)."""
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)
    atomic_write_bytes(path, data)


def load_tensors(path: Path) -> Tensors:
    """Read named tensors written by :func:`save_tensors`."""
    return dict(load_file(str(path)))


class ClientStore:
    """Private tensors of every client, kept in memory as independent CPU copies."""

    def __init__(self, initial: Mapping[str, torch.Tensor], client_ids: list[str]) -> None:
        """Start every client from the same ``initial`` private tensors (one shared seed)."""
        self._initial = clone(initial)
        self._ids = list(client_ids)
        self._state: dict[str, Tensors] = {}

    @property
    def client_ids(self) -> list[str]:
        """All client ids, in order."""
        return list(self._ids)

    def get(self, client: str) -> Tensors:
        """A copy of the client's private tensors (the initial ones before it first trains)."""
        self._check(client)
        return clone(self._state.get(client, self._initial))

    def put(self, client: str, tensors: Mapping[str, torch.Tensor]) -> None:
        """Replace the client's private tensors by a copy of ``tensors`` (same keys required)."""
        self._check(client)
        if tensors.keys() != self._initial.keys():
            raise KeyError(f"client {client}: private tensor names differ from the initial ones")
        self._state[client] = clone(tensors)

    def trained(self) -> dict[str, Tensors]:
        """Copies of the private tensors of every client that has trained at least once."""
        return {client: clone(state) for client, state in self._state.items()}

    def restore(self, states: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Replace all per-client state by ``states`` (from a checkpoint); others start fresh."""
        self._state = {}
        for client, tensors in states.items():
            self.put(client, tensors)

    def save(self, directory: Path) -> None:
        """Write ``<directory>/<client_id>.safetensors`` for every client, atomically each."""
        for client in self._ids:
            save_tensors(directory / f"{client}.safetensors", self.get(client))

    def _check(self, client: str) -> None:
        if client not in self._ids:
            raise KeyError(f"unknown client {client!r}")


__all__ = ["ClientStore", "atomic_write_bytes", "atomic_write_json", "load_tensors", "save_tensors"]
