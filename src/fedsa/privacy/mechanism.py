"""DP-FedAvg's mechanism on the shared tensors: clip each update, noise the sum, fixed denominator.

Client k's update is ``delta_k = upload_k - received_k`` over every tensor it uploaded, flattened
together: one L2 norm over all layers (clipping per layer would bound each layer, not the
client). It is scaled to norm at most ``S = privacy.clip_norm``. The server adds ``N(0, (z S)^2)``
to every coordinate of the sum and divides by the *expected* number of participants ``q N``, not
the actual one, so that one client's presence changes the released mean by at most ``S / (q N)``.

:func:`private_rule` wraps a server rule that depends on the uploads only through their mean (the
rule of FedSA-LoRA, FedIT, FFA-LoRA, FedDPA, FedSVD, RoLoRA, ...): it hands the inner rule uploads
whose uniform mean is exactly ``shared + (sum_k clip(delta_k) + noise) / (q N)``, so whatever the
inner rule does after averaging (FedSVD's re-factorisation) is post-processing of the private
release.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from fedsa.algorithms.hooks import ServerContext, ServerOutput, ServerRule, Upload
from fedsa.core.params import Tensors
from fedsa.privacy.accounting import expected_participants, noise_multiplier


def clip_update(update: Mapping[str, torch.Tensor], bound: float) -> tuple[Tensors, float]:
    """``update`` scaled to L2 norm at most ``bound`` (one norm over every tensor); its norm."""
    norm = math.sqrt(sum(float(t.double().pow(2).sum()) for t in update.values()))
    factor = min(1.0, bound / norm) if norm > 0 else 1.0
    return {k: t.double() * factor for k, t in update.items()}, norm


def noise_generator(noise_seed: int, round_idx: int) -> torch.Generator:
    """A generator for round t's noise: from (noise_seed, t), or from the OS when seed is 0."""
    if noise_seed > 0:
        seed = int(np.random.SeedSequence([noise_seed, round_idx, 104729]).generate_state(1)[0])
    else:
        seed = secrets.randbits(63)
    return torch.Generator().manual_seed(seed)


def noised_mean_update(
    uploads: Sequence[Upload], bound: float, std: float, denominator: float, gen: torch.Generator
) -> tuple[Tensors, list[float]]:
    """``(sum_k clip(delta_k) + N(0, std^2)) / denominator`` in float64, and each update's norm."""
    names = sorted(uploads[0].tensors)
    total = {n: torch.zeros(uploads[0].tensors[n].shape, dtype=torch.float64) for n in names}
    norms = []
    for u in uploads:
        delta = {n: u.tensors[n].double() - u.received[n].double() for n in names}
        clipped, norm = clip_update(delta, bound)
        norms.append(norm)
        for n in names:
            total[n] += clipped[n]
    return add_noise(total, std, denominator, gen), norms


def add_noise(total: Tensors, std: float, denominator: float, gen: torch.Generator) -> Tensors:
    """``(total + N(0, std^2)) / denominator`` per coordinate, float64: the released mean.

    The noise is drawn in sorted name order, so one noise seed gives the same draw whether the
    server summed the updates itself or received their sum from secure aggregation.
    """
    out = {}
    for n in sorted(total):
        noise = std * torch.randn(total[n].shape, generator=gen, dtype=torch.float64)
        out[n] = (total[n].double() + noise) / denominator
    return out


def release(shared: Mapping[str, torch.Tensor], step: Mapping[str, torch.Tensor]) -> Tensors:
    """``shared + step`` for the stepped tensors, summed in float64, in ``shared``'s dtypes."""
    return {n: (shared[n].double() + d).to(shared[n].dtype) for n, d in step.items()}


def private_rule(inner: ServerRule) -> ServerRule:
    """``inner`` applied to the DP-FedAvg release of the round instead of the raw uploads."""

    def rule(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
        if not uploads or not uploads[0].tensors:
            return inner(uploads, ctx)
        p = ctx.cfg.privacy
        std = noise_multiplier(ctx.cfg) * p.clip_norm
        gen = noise_generator(p.noise_seed, ctx.round)
        mean, _ = noised_mean_update(uploads, p.clip_norm, std, expected_participants(ctx.cfg), gen)
        released = release(ctx.shared, mean)
        same = [Upload(u.client, released, 1.0, u.received) for u in uploads]
        return inner(same, ctx)

    return rule
