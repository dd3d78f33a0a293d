"""Server rules: pure functions from a round's accepted uploads to what clients receive.

The default, :func:`weighted_mean_rule`, is the rule of FedSA-LoRA, FedIT, FFA-LoRA and FedDPA:
each uploaded tensor is replaced by the weighted mean of the clients' values; shared tensors not
uploaded this round (a schedule that sends one factor a round) keep their global value. A method
whose server does more (stacking, SVD, residuals, noise) adds its own rule here or in its own
module, with the same signature (:data:`fedsa.algorithms.hooks.ServerRule`).
"""

from __future__ import annotations

from collections.abc import Sequence

from fedsa.algorithms.aggregate import weighted_mean
from fedsa.algorithms.hooks import ServerContext, ServerOutput, Upload


def weighted_mean_rule(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
    """``x <- sum_k p_k x_k`` for every uploaded tensor x, ``p_k = w_k / sum_j w_j``.

    Sums are taken in float64 (:func:`~fedsa.algorithms.aggregate.weighted_mean`). The rule keeps
    no state; an algorithm that shares nothing (local-only) passes its empty shared dict through.
    """
    if not ctx.shared:
        return ServerOutput(shared={}, state=dict(ctx.state))
    mean = weighted_mean([u.tensors for u in uploads], [u.weight for u in uploads])
    return ServerOutput(shared={**ctx.shared, **mean}, state=dict(ctx.state))
