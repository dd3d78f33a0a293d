"""One client's round: receive shared tensors, restore own private ones, train, split, upload.

This is the whole client side of every algorithm. The in-process simulator and the Flower
ClientApp both call :func:`client_round`, so the two engines cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fedsa.adapters import Layout, apply_trainable
from fedsa.batching import Encoded, collate, sample_batches
from fedsa.config import RunConfig
from fedsa.device import autocast_dtype
from fedsa.params import Tensors, read_from, write_into
from fedsa.train import train_steps


@dataclass(frozen=True)
class ClientResult:
    """What a client produces in one round."""

    upload: Tensors
    """The shared tensors after local training: the only thing sent to the server."""
    private: Tensors
    """The private tensors after local training: stay on the client."""
    train_loss: float
    num_examples: int


def client_seed(seed: int, round_idx: int, client_index: int) -> int:
    """A seed for (run seed, round, client), independent of which other clients take part."""
    return int(np.random.SeedSequence([seed, round_idx, client_index]).generate_state(1)[0])


def phase_steps(cfg: RunConfig, phases: int) -> list[int]:
    """How a round's local steps are split across training phases.

    Only FedDPA has two phases (global adapter, then local adapter); it gives the local one
    ``round(local_steps * feddpa.local_fraction)`` steps, so every method has the same budget.
    """
    total = cfg.federation.local_steps
    if phases == 1:
        return [total]
    assert phases == 2, "only one- and two-phase algorithms exist"
    local = round(total * cfg.feddpa.local_fraction)
    return [total - local, local]


def load_client_state(
    model: torch.nn.Module,
    frozen: Mapping[str, torch.Tensor],
    shared: Mapping[str, torch.Tensor],
    private: Mapping[str, torch.Tensor],
) -> None:
    """Put a client's complete adapter state into the model: every adapter tensor is written.

    Frozen, shared and private together cover all adapter parameters (see
    :class:`~fedsa.adapters.Layout`), so nothing from a previous client can survive the swap.
    """
    write_into(model, frozen)
    write_into(model, shared)
    write_into(model, private)


def client_round(
    model: torch.nn.Module,
    layout: Layout,
    *,
    frozen: Mapping[str, torch.Tensor],
    shared: Mapping[str, torch.Tensor],
    private: Mapping[str, torch.Tensor],
    data: Encoded,
    indices: Sequence[int],
    cfg: RunConfig,
    seed: int,
    device: torch.device,
) -> ClientResult:
    """Run E local steps for one client and return its upload and new private state.

    Args:
        model: the one PEFT model of this process (its adapter state is overwritten).
        layout: which names are shared, private and frozen.
        frozen: common never-trained tensors (FFA-LoRA's A).
        shared: the global shared tensors received from the server.
        private: this client's own private tensors from its last participation.
        data: the tokenised training split.
        indices: this client's training examples.
        cfg: run configuration (local steps, batch size, optimizer).
        seed: from :func:`client_seed`; fixes batch order and dropout.
        device: where the model lives.
    """
    load_client_state(model, frozen, shared, private)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    batches = sample_batches(
        indices,
        cfg.federation.local_steps,
        cfg.federation.batch_size,
        rng,
        lengths=data.lengths if cfg.federation.group_by_length else None,
    )
    dtype = autocast_dtype(cfg.precision, device)
    params = dict(model.named_parameters())
    losses: list[float] = []
    start = 0
    for names, steps in zip(layout.phases, phase_steps(cfg, len(layout.phases)), strict=True):
        if steps == 0:
            continue
        phase = set(names)
        for name, param in params.items():  # only this phase's tensors get gradients
            param.requires_grad_(name in phase)
        chunk = batches[start : start + steps]
        start += steps
        loss = train_steps(
            model,
            [params[n] for n in names],
            (collate(data, b) for b in chunk),
            cfg.optim,
            device,
            dtype,
        )
        losses.append(loss * steps)
    apply_trainable(model, layout)
    return ClientResult(
        upload=read_from(model, layout.shared),
        private=read_from(model, layout.private),
        train_loss=sum(losses) / cfg.federation.local_steps,
        num_examples=len(indices),
    )
