"""The layout: every adapter parameter of a model is exactly one of shared, private or frozen.

Combining an adapter variant (which names form the A and B sides) with an algorithm (which slots
train and which are shared) gives a :class:`Layout`. The engine only ever moves whole layouts,
which is what makes leaking one client's ``B`` into another client impossible by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedsa.adapters.variants import Variant
from fedsa.algorithms.spec import Algorithm
from fedsa.core.slots import A, B, Slot


@dataclass(frozen=True)
class Layout:
    """Every adapter parameter name, in exactly one of three groups (model order)."""

    shared: tuple[str, ...]
    """Owned by the server: sent to clients, replaced by the server rule (usually trained,
    uploaded and averaged)."""
    private: tuple[str, ...]
    """Trained and kept per client."""
    frozen: tuple[str, ...]
    """Never trained, never sent: identical initial value on every client."""
    slots: dict[str, Slot]
    """The slot of every adapter parameter name."""
    trains: frozenset[Slot]
    """The algorithm's trained slots (a shared slot need not train: the server may own it)."""

    @property
    def trainable(self) -> tuple[str, ...]:
        """Names the optimizer may see (shared and private names of trained slots)."""
        return tuple(n for n in self.shared + self.private if self.slots[n] in self.trains)

    def names(self, slots: frozenset[Slot], among: tuple[str, ...]) -> tuple[str, ...]:
        """The names of ``among`` whose slot is in ``slots``, in ``among``'s order."""
        return tuple(n for n in among if self.slots[n] in slots)


def make_layout(
    model: torch.nn.Module, variant: Variant, algorithm: Algorithm, share_head: bool
) -> Layout:
    """Classify the adapter parameters of ``model`` for this algorithm and head policy."""
    shared_slots = algorithm.shared_slots(share_head)
    private_slots = algorithm.private_slots(share_head)
    slots: dict[str, Slot] = {}
    groups: dict[str, list[str]] = {"shared": [], "private": [], "frozen": []}
    for name, _ in model.named_parameters():
        slot = variant.slot_of(name)
        if slot is None:
            continue
        slots[name] = slot
        group = (
            "shared" if slot in shared_slots else "private" if slot in private_slots else "frozen"
        )
        groups[group].append(name)
    missing = {A, B} - set(slots.values())
    if missing:
        raise RuntimeError(
            f"no {sorted(missing)} parameters found for variant {variant.name!r}: PEFT may have "
            "renamed its parameters (see tests/test_adapters.py) or target_modules matched nothing"
        )
    return Layout(
        shared=tuple(groups["shared"]),
        private=tuple(groups["private"]),
        frozen=tuple(groups["frozen"]),
        slots=slots,
        trains=algorithm.trains,
    )


def apply_trainable(model: torch.nn.Module, layout: Layout) -> None:
    """Let exactly the layout's trainable parameters receive gradients."""
    trainable = set(layout.trainable)
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
