"""Install steps: how a client puts what it received into the one model of its process.

The in-process engine swaps every client through the same model object, so an install step must
write the client's *complete* adapter state: frozen, shared and private tensors together cover
every adapter parameter (:class:`~fedsa.adapters.layout.Layout`), and nothing from a previous
client can survive the swap. Base-weight changes arrive as absolute values (the server's running
sum of its deltas), so installing them is idempotent: the same for the first client of a round as
for the last, and for a client that skipped rounds.
"""

from __future__ import annotations

import torch

from fedsa.algorithms.hooks import ClientStart
from fedsa.core.params import write_into


def write_all(model: torch.nn.Module, start: ClientStart) -> None:
    """The default: base changes, frozen, shared and the client's own private tensors, as given."""
    write_into(model, start.base)
    write_into(model, start.frozen)
    write_into(model, start.shared)
    write_into(model, start.private)


def reset_private(model: torch.nn.Module, start: ClientStart) -> None:
    """A fresh private adapter every round: the common initial private tensors, not the client's.

    For methods whose clients re-initialise what they keep after the server merged it into the
    base (FLoRA-style merge-and-restart) or restart from the initial factor each round.
    """
    write_into(model, start.base)
    write_into(model, start.frozen)
    write_into(model, start.shared)
    write_into(model, start.initial_private)
