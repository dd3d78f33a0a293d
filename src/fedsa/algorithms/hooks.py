"""The typed extension points of an algorithm, and the values they exchange with the engine.

One hook per thing that differs between methods (a Flower strategy overrides one method; there is
no implementation inheritance here). Each hook is a plain function type; its default lives next
to it or in :mod:`fedsa.algorithms.rules` / :mod:`fedsa.algorithms.install`. Both engines (the
in-process simulator and Flower) call the same hooks through :mod:`fedsa.engine.server_step` and
:mod:`fedsa.engine.client`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from fedsa.config.schema import AdapterConfig, RunConfig
from fedsa.core.params import Tensors
from fedsa.core.slots import Slot
from fedsa.tasks.base import TaskEval

# --------------------------------------------------------------------------- round schedule


@dataclass(frozen=True)
class Phase:
    """Consecutive local steps that train only ``slots`` (the rest get no gradient)."""

    slots: frozenset[Slot]
    steps: int


@dataclass(frozen=True)
class RoundPlan:
    """One round of one algorithm: its local training phases and the slots it uploads."""

    phases: tuple[Phase, ...]
    sends: frozenset[Slot] | None = None
    """Slots uploaded this round (None: every shared slot). RoLoRA sends one factor a round."""


RoundSchedule = Callable[[frozenset[Slot], int, RunConfig], RoundPlan]
"""``(the algorithm's trained slots, round t >= 1, config) -> the plan of round t``."""


def same_every_round(trains: frozenset[Slot], round_idx: int, cfg: RunConfig) -> RoundPlan:
    """The default schedule: every trained slot, all local steps, every shared slot sent."""
    return RoundPlan(phases=(Phase(trains, cfg.federation.local_steps),))


# --------------------------------------------------------------------------- server rule


@dataclass(frozen=True)
class Upload:
    """One accepted client upload, as the server rule sees it."""

    client: str
    tensors: Tensors
    """The uploaded tensors (this round's sent slots)."""
    weight: float
    """Aggregation weight: the client's example count, or 1 with uniform weighting."""
    received: Tensors
    """What this client was sent this round (its starting point: ``tensors - received`` is its
    update, as DP clipping needs)."""


@dataclass(frozen=True)
class ServerContext:
    """Everything a server rule may read besides the uploads. Rules must not mutate it."""

    round: int
    cfg: RunConfig
    shared: Tensors
    """The global shared tensors before this round's aggregation."""
    state: Tensors
    """The rule's own state from the previous round (empty at first)."""
    slots: Mapping[str, Slot]
    """Slot of every adapter parameter name."""
    scale: float
    """The adapter's scale ``s`` (alpha/r or alpha/sqrt(r); 1 for VeRA)."""
    client_ids: Sequence[str]
    ranks: Mapping[str, int] = field(default_factory=dict)
    """Every client's rank ``r_k`` (``adapter.client_ranks``; all ``adapter.r`` otherwise)."""
    scales: Mapping[str, float] = field(default_factory=dict)
    """Every client's scale ``s_k`` (alpha/r_k or alpha/sqrt(r_k)); all ``scale`` otherwise."""
    max_rank: int = 0
    """The rank of the global factors (``max(client_ranks)``, else ``adapter.r``)."""


@dataclass(frozen=True)
class ServerOutput:
    """What a server rule returns; the engine stores it and sends it."""

    shared: Tensors
    """New global shared tensors (every shared name): what each client receives."""
    per_client: Mapping[str, Tensors] = field(default_factory=dict)
    """Tensors for particular clients that replace same-named ones of ``shared`` when they are
    next sent (FlexLoRA's per-client truncations)."""
    base_delta: Tensors = field(default_factory=dict)
    """Additions to base-model weights (a merged product or residual) in the form they travel:
    ``W`` itself dense, or factors ``W@B``, ``W@A`` whose product is the addition to weight
    ``W`` (:func:`fedsa.algorithms.lowrank.compact`). Communication is counted from this form;
    the engine and every client rebuild the same additions from it
    (:func:`~fedsa.algorithms.lowrank.expand`) and accumulate them."""
    state: Tensors = field(default_factory=dict)
    """The rule's state for the next round (saved in checkpoints, restored exactly)."""


ServerRule = Callable[[Sequence[Upload], ServerContext], ServerOutput]


# --------------------------------------------------------------------------- install step


@dataclass(frozen=True)
class ClientStart:
    """Everything a client's model is built from at the start of its round or evaluation."""

    frozen: Tensors
    """Common never-trained adapter tensors (FFA-LoRA's A)."""
    shared: Tensors
    """What the server sent this client."""
    private: Tensors
    """The client's own tensors from its last participation."""
    initial_private: Tensors
    """The common initial private tensors (for steps that re-initialise the adapter)."""
    base: Tensors
    """Base-model weights changed by the server so far (absolute values; usually empty)."""
    rank: int = 0
    """The client's own rank under ``adapter.client_ranks`` (0: the model's rank). ``shared``
    then holds rank-``rank`` factors, padded and scaled on install
    (:func:`fedsa.engine.client.install_start`)."""
    labels: int = 0
    """The client's own label count under ``data.client_tasks`` (0: the whole head); the head's
    outputs past it are masked on install (:mod:`fedsa.adapters.label_space`)."""


InstallStep = Callable[[torch.nn.Module, ClientStart], None]
"""Write a client's complete starting state into the one model."""

PruneStep = Callable[[Tensors, Mapping[str, Slot], float, RunConfig], int]
"""``(upload at the client's current rank, slots, its scale s_k, config) -> the rank it keeps``:
the components past it are zeroed in the upload, and the server sends that rank from then on
(HetLoRA's self-pruning)."""


# --------------------------------------------------------------------------- model and evaluation


ModelHook = Callable[[torch.nn.Module, AdapterConfig, RunConfig], None]
"""Extends the freshly built PEFT model (FedDPA adds its local adapter)."""


@dataclass(frozen=True)
class ClientEval:
    """What evaluating one client's personalised model needs (the model holds its state)."""

    model: torch.nn.Module
    task: TaskEval
    client: int
    """The client's index."""
    train_indices: Sequence[int]
    eval_indices: Sequence[int]
    cfg: RunConfig
    records: list[dict[str, Any]] | None = None
    """Where a generation task appends what each prompt got (None: keep no records)."""


ClientEvaluator = Callable[[ClientEval], dict[str, float]]


def task_evaluation(e: ClientEval) -> dict[str, float]:
    """The default evaluator: the task's own metric on the client's evaluation shard."""
    return e.task.evaluate(e.model, e.eval_indices, e.records)
