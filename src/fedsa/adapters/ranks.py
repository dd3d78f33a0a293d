"""Clients with different LoRA ranks on one base model: rank views, padding and scales.

``adapter.client_ranks = [4, 8, 16]`` gives client k the rank ``r_k = client_ranks[k % 3]`` and
the scale ``s_k = alpha / r_k`` (``alpha / sqrt(r_k)`` for rsLoRA). One PEFT model of rank
``r_max = max(client_ranks)`` stays in memory; a rank-``r_k`` client uses its first ``r_k`` rank
components and zeros in the rest:

* ``A`` (r_max, n) holds the client's ``A_k`` (r_k, n) in its first rows, zeros below;
* ``B`` (m, r_max) holds ``B_k`` (m, r_k) in its first columns, zeros to the right;
* every LoRA layer's scale is set to ``s_k`` (PEFT's ``LoraLayer.set_scale``).

Then ``s_k B A x = s_k B_k A_k x`` exactly, and the padded entries get zero gradients (``dL/dA``
rows are ``B``'s zero columns times the output gradient, ``dL/dB`` columns are the zero rows of
``A x``), so under any optimizer with zero-preserving updates (SGD, Adam, AdamW) they stay zero:
the client trains exactly a PEFT LoRA of rank ``r_k`` with scale ``s_k``
(``tests/test_ranks.py`` compares both, output and gradients). What travels is the client's own
rank only: :func:`at_rank` slices what is sent and uploaded, :func:`padded` restores the model's
shape on arrival, so bytes follow ``r_k``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from fedsa.config.schema import RunConfig
from fedsa.core.params import Tensors
from fedsa.core.slots import A, B, Slot

A_SIDE, B_SIDE = ".lora_A.", ".lora_B."


def heterogeneous(cfg: RunConfig) -> bool:
    """Whether ``adapter.client_ranks`` gives clients their own ranks."""
    return bool(cfg.adapter.client_ranks)


def max_rank(cfg: RunConfig) -> int:
    """The rank the one model is built with: ``max(client_ranks)``, else ``adapter.r``."""
    return max(cfg.adapter.client_ranks) if cfg.adapter.client_ranks else cfg.adapter.r


def client_rank(cfg: RunConfig, client: str | int) -> int:
    """Client ``client``'s rank: ``client_ranks[k % len]``, else ``adapter.r``."""
    ranks = cfg.adapter.client_ranks
    return ranks[int(client) % len(ranks)] if ranks else cfg.adapter.r


def scale_for(cfg: RunConfig, rank: int) -> float:
    """``alpha / rank`` (LoRA) or ``alpha / sqrt(rank)`` (rsLoRA); 1 for VeRA."""
    if cfg.adapter.variant == "rslora":
        return cfg.adapter.alpha / math.sqrt(rank)
    if cfg.adapter.variant == "lora":
        return cfg.adapter.alpha / rank
    return 1.0


def client_scale(cfg: RunConfig, client: str | int) -> float:
    """Client ``client``'s scale ``s_k``."""
    return scale_for(cfg, client_rank(cfg, client))


def _side(name: str, slot: Slot | None) -> str:
    if slot == A and A_SIDE in name:
        return "a"
    if slot == B and B_SIDE in name:
        return "b"
    return ""


def at_rank(tensors: Mapping[str, torch.Tensor], slots: Mapping[str, Slot], rank: int) -> Tensors:
    """``tensors`` cut to ``rank`` components: ``A[:rank]`` (rows), ``B[:, :rank]`` (columns).

    Other tensors (the head) are passed as they are. Slices are copies, so what is sent never
    aliases server state.
    """
    out: Tensors = {}
    for name, value in tensors.items():
        side = _side(name, slots.get(name))
        if side == "a":
            out[name] = value[:rank].clone()
        elif side == "b":
            out[name] = value[:, :rank].clone()
        else:
            out[name] = value
    return out


def padded(tensors: Mapping[str, torch.Tensor], slots: Mapping[str, Slot], rank: int) -> Tensors:
    """``tensors`` zero-padded to ``rank`` components (the inverse of :func:`at_rank`)."""
    out: Tensors = {}
    for name, value in tensors.items():
        side = _side(name, slots.get(name))
        have = value.shape[0] if side == "a" else value.shape[1] if side == "b" else rank
        if have == rank:
            out[name] = value
        elif side == "a":
            out[name] = torch.cat([value, value.new_zeros(rank - have, value.shape[1])], dim=0)
        else:
            out[name] = torch.cat([value, value.new_zeros(value.shape[0], rank - have)], dim=1)
    return out


def set_rank_scale(model: torch.nn.Module, cfg: RunConfig, rank: int) -> None:
    """Give every LoRA layer of the default adapter the scale of ``rank``, ``s_k``.

    PEFT's ``set_scale`` multiplies the layer's own initial scale (that of ``r_max``), so the
    factor is ``s_k / s_max``.
    """
    factor = scale_for(cfg, rank) / scale_for(cfg, max_rank(cfg))
    for module in model.modules():
        set_scale = getattr(module, "set_scale", None)
        if set_scale is not None and hasattr(module, "lora_A"):
            set_scale("default", factor)


def alpha_at_max_rank(cfg: RunConfig, rank: int) -> float:
    """The ``lora_alpha`` that gives a rank-``r_max`` PEFT adapter the scale of ``rank``.

    An exported rank-``r_k`` client keeps the model's ``r_max`` shapes (zeros past ``r_k``), so
    its ``adapter_config.json`` needs ``lora_alpha = s_k r_max`` (rsLoRA: ``s_k sqrt(r_max)``)
    for PEFT to rebuild ``s_k`` on load.
    """
    r_max = max_rank(cfg)
    root = math.sqrt(r_max) if cfg.adapter.variant == "rslora" else float(r_max)
    return scale_for(cfg, rank) * root


def rank_of(tensors: Mapping[str, torch.Tensor], slots: Mapping[str, Slot]) -> int:
    """The rank the A-side (else B-side) factors in ``tensors`` are cut to (0: none there)."""
    for name, value in tensors.items():
        side = _side(name, slots.get(name))
        if side:
            return int(value.shape[0] if side == "a" else value.shape[1])
    return 0


def held_rank(tensors: Mapping[str, torch.Tensor], slots: Mapping[str, Slot]) -> int:
    """One past the last rank component that is nonzero in any factor (at least 1).

    A client that pruned its rank uploads zeros past the rank it keeps; this is how the server
    learns it (:func:`fedsa.engine.server_step.server_update`).
    """
    held = 1
    for name, value in tensors.items():
        side = _side(name, slots.get(name))
        if side:
            lines = value.detach().ne(0).any(dim=1 if side == "a" else 0)  # per component
            nonzero = torch.nonzero(lines)
            if nonzero.numel():
                held = max(held, int(nonzero[-1]) + 1)
    return held


def zero_past(tensors: Mapping[str, torch.Tensor], slots: Mapping[str, Slot], rank: int) -> Tensors:
    """``tensors`` with the rank components past ``rank`` set to zero (shapes kept)."""
    out: Tensors = {}
    for name, value in tensors.items():
        side = _side(name, slots.get(name))
        if side == "a":
            value = value.clone()
            value[rank:] = 0
        elif side == "b":
            value = value.clone()
            value[:, rank:] = 0
        out[name] = value
    return out
