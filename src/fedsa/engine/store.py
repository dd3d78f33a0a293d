"""Per-client private state, kept in memory between a client's participations.

Every client owns its private tensors (FedSA's ``B`` and head). The store hands out copies and
takes copies back, so no tensor object is ever shared between two clients or with the model: the
classic defect of one model object whose "local" ``B`` silently leaks from client to client
cannot happen. A client that never participated holds the common initial values.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from fedsa.core.io import save_tensors
from fedsa.core.params import Tensors, clone


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
