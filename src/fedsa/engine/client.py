"""One client's round: install what it received, train by the round's plan, split, upload.

This is the whole client side of every algorithm: the algorithm's install step puts the
received tensors (and its own private ones) into the model, its round schedule says which slots
train in which phase and which are uploaded. The in-process simulator and the Flower ClientApp
both call :func:`client_round`, so the two engines cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fedsa.adapters.label_space import set_label_space
from fedsa.adapters.layout import Layout, apply_trainable
from fedsa.adapters.ranks import (
    at_rank,
    max_rank,
    padded,
    rank_of,
    scale_for,
    set_rank_scale,
    zero_past,
)
from fedsa.algorithms.align import rotate_to_received
from fedsa.algorithms.hooks import ClientStart
from fedsa.algorithms.spec import Algorithm
from fedsa.config.schema import RunConfig
from fedsa.core.device import autocast_dtype
from fedsa.core.params import Tensors, read_from
from fedsa.engine.train import train_steps
from fedsa.tasks.batching import Encoded, collate, sample_batches


@dataclass(frozen=True)
class ClientResult:
    """What a client produces in one round."""

    upload: Tensors
    """The shared tensors of the round's sent slots after local training: the only thing sent
    to the server."""
    private: Tensors
    """The private tensors after local training: stay on the client."""
    train_loss: float
    num_examples: int


def client_seed(seed: int, round_idx: int, client_index: int) -> int:
    """A seed for (run seed, round, client), independent of which other clients take part."""
    return int(np.random.SeedSequence([seed, round_idx, client_index]).generate_state(1)[0])


def install_start(
    model: torch.nn.Module, algorithm: Algorithm, start: ClientStart, layout: Layout, cfg: RunConfig
) -> None:
    """The algorithm's install step, at the client's own rank when ranks differ.

    A rank-``r_k`` client's received factors are zero-padded to the model's rank and every LoRA
    layer gets the scale ``s_k`` (:mod:`fedsa.adapters.ranks`); a client with its own task has
    its head restricted to its labels (:mod:`fedsa.adapters.label_space`). With one rank and one
    task for all this is the install step itself.
    """
    if start.rank:
        shared = padded(start.shared, layout.slots, max_rank(cfg))
        start = dataclasses.replace(start, shared=shared)
        set_rank_scale(model, cfg, start.rank)
    set_label_space(model, start.labels)  # 0 lifts a previous client's mask
    algorithm.install(model, start)


def client_round(
    model: torch.nn.Module,
    layout: Layout,
    algorithm: Algorithm,
    *,
    start: ClientStart,
    data: Encoded,
    indices: Sequence[int],
    cfg: RunConfig,
    round_idx: int,
    seed: int,
    device: torch.device,
) -> ClientResult:
    """Install, run the round's local phases for one client, and return its upload and new state.

    Args:
        model: the one PEFT model of this process (its adapter state is overwritten).
        layout: which names are shared, private and frozen.
        algorithm: whose install step and round schedule to follow.
        start: what the client starts from (received tensors, its private ones, base changes).
        data: the tokenised training split.
        indices: this client's training examples.
        cfg: run configuration (local steps, batch size, optimizer).
        round_idx: the round (the schedule may differ by round).
        seed: from :func:`client_seed`; fixes batch order and dropout.
        device: where the model lives.
    """
    install_start(model, algorithm, start, layout, cfg)
    plan = algorithm.schedule(algorithm.trains, round_idx, cfg)
    total = sum(phase.steps for phase in plan.phases)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    batches = sample_batches(
        indices,
        total,
        cfg.federation.batch_size,
        rng,
        lengths=data.lengths if cfg.federation.group_by_length else None,
    )
    dtype = autocast_dtype(cfg.precision, device)
    params = dict(model.named_parameters())
    losses: list[float] = []
    offset = 0
    for phase in plan.phases:
        if phase.steps == 0:
            continue
        names = layout.names(phase.slots, layout.trainable)
        trained = set(names)
        for name, param in params.items():  # only this phase's tensors get gradients
            param.requires_grad_(name in trained)
        chunk = batches[offset : offset + phase.steps]
        offset += phase.steps
        loss = train_steps(
            model,
            [params[n] for n in names],
            (collate(data, b) for b in chunk),
            cfg.optim,
            device,
            dtype,
        )
        losses.append(loss * phase.steps)
    apply_trainable(model, layout)
    if algorithm.rotates(cfg.federation.align):
        rotate_to_received(model, layout, start.shared, cfg.federation.align_lambda)
    sent = layout.shared if plan.sends is None else layout.names(plan.sends, layout.shared)
    upload = read_from(model, sent)
    if start.rank:  # the rank it was sent (its own, or what it pruned to), then maybe pruned
        upload = at_rank(upload, layout.slots, rank_of(start.shared, layout.slots) or start.rank)
        if algorithm.prune is not None:
            scale = scale_for(cfg, start.rank)
            keep = algorithm.prune(upload, layout.slots, scale, cfg)
            upload = zero_past(upload, layout.slots, keep)
    return ClientResult(
        upload=upload,
        private=read_from(model, layout.private),
        train_loss=sum(losses) / total,
        num_examples=len(indices),
    )
