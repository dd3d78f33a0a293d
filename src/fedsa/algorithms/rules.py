"""Server rules: pure functions from a round's accepted uploads to what clients receive.

The default, :func:`weighted_mean_rule`, is the rule of FedIT, FFA-LoRA and FedDPA (and of
FedSA-LoRA, through :func:`row_mean_rule`, which generalises it to clients of different ranks):
each uploaded tensor is replaced by the weighted mean of the clients' values; shared tensors not
uploaded this round (a schedule that sends one factor a round) keep their global value. A method
whose server does more (stacking, SVD, residuals, noise) adds its own rule here or in its own
module, with the same signature (:data:`fedsa.algorithms.hooks.ServerRule`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedsa.algorithms.aggregate import weighted_mean
from fedsa.algorithms.hooks import ServerContext, ServerOutput, Upload
from fedsa.core.slots import A, B


def weighted_mean_rule(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
    """``x <- sum_k p_k x_k`` for every uploaded tensor x, ``p_k = w_k / sum_j w_j``.

    Sums are taken in float64 (:func:`~fedsa.algorithms.aggregate.weighted_mean`). The rule keeps
    no state; an algorithm that shares nothing (local-only) passes its empty shared dict through.
    """
    if not ctx.shared:
        return ServerOutput(shared={}, state=dict(ctx.state))
    mean = weighted_mean([u.tensors for u in uploads], [u.weight for u in uploads])
    return ServerOutput(shared={**ctx.shared, **mean}, state=dict(ctx.state))


def row_mean_rule(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
    """FedSA-LoRA over heterogeneous ranks: each rank row averaged over the clients holding it.

    Uploads of the global shape go through :func:`~fedsa.algorithms.rules.weighted_mean_rule`
    unchanged; otherwise, for an A-side tensor row j (a B-side column j),
    ``x_j <- sum_{k: r_k > j} w_k x_{k,j} / sum_{k: r_k > j} w_k`` in float64.
    """
    if all(u.tensors[n].shape == ctx.shared[n].shape for u in uploads for n in u.tensors):
        return weighted_mean_rule(uploads, ctx)
    shared = dict(ctx.shared)
    for name in uploads[0].tensors:
        glob = ctx.shared[name]
        side = 0 if ctx.slots.get(name) == A else 1 if ctx.slots.get(name) == B else -1
        if side < 0:  # the head: one shape for everyone
            shared[name] = weighted_mean([{name: u.tensors[name]} for u in uploads],
                                         [u.weight for u in uploads])[name]  # fmt: skip
            continue
        acc = torch.zeros(glob.shape, dtype=torch.float64)
        total = torch.zeros(glob.shape[side], dtype=torch.float64)
        for u in uploads:
            x = u.tensors[name].detach().to("cpu", torch.float64)
            r = x.shape[side]
            if side == 0:
                acc[:r] += u.weight * x
            else:
                acc[:, :r] += u.weight * x
            total[:r] += u.weight
        held = total > 0
        new = glob.detach().to("cpu", torch.float64).clone()
        if side == 0:
            new[held] = acc[held] / total[held, None]
        else:
            new[:, held] = acc[:, held] / total[held]
        shared[name] = new.to(glob.dtype)
    return ServerOutput(shared=shared, state=dict(ctx.state))
