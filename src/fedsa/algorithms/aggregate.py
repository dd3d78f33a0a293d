"""Server-side aggregation: one pure function over named tensors, plus update validation.

The server never knows which algorithm runs: it averages whatever named tensors arrive. Algorithms
whose server step is not a plain mean (stacking, SVD, residuals) will add a server function to
their spec rather than branch here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from fedsa.core.errors import UpdateError
from fedsa.core.params import Tensors


def validate_update(
    update: Mapping[str, torch.Tensor],
    reference: Mapping[str, torch.Tensor],
    *,
    client: str = "?",
    max_norm: float | None = None,
) -> None:
    """Check an update against the expected keys, shapes and dtypes; values must be finite.

    Raises:
        UpdateError: naming the client and the first problem found.
    """
    missing = sorted(set(reference) - set(update))
    extra = sorted(set(update) - set(reference))
    if missing or extra:
        raise UpdateError(
            f"update from client {client} has the wrong keys: missing {missing[:3]}, "
            f"unexpected {extra[:3]}"
        )
    total_sq = 0.0
    for name, ref in reference.items():
        value = update[name]
        if value.shape != ref.shape or value.dtype != ref.dtype:
            raise UpdateError(
                f"update from client {client}: {name} is {tuple(value.shape)} {value.dtype}, "
                f"expected {tuple(ref.shape)} {ref.dtype}"
            )
        if not bool(torch.isfinite(value).all()):
            raise UpdateError(f"update from client {client}: {name} has NaN or inf values")
        total_sq += float(value.double().pow(2).sum())
    if max_norm is not None and math.sqrt(total_sq) > max_norm:
        raise UpdateError(
            f"update from client {client} has norm {math.sqrt(total_sq):.4g} > bound {max_norm}"
        )


def screen_updates(
    updates: Mapping[str, Mapping[str, torch.Tensor]],
    reference: Mapping[str, torch.Tensor],
    *,
    max_norm: float | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Split client updates into valid and rejected ones before anything is averaged.

    Every engine (in-process and Flower) screens with this one function, so a bad update is
    judged the same way everywhere.

    Args:
        updates: client id -> its uploaded tensors.
        reference: the shared tensors the clients received (expected keys, shapes, dtypes).
        max_norm: optional bound on each update's L2 norm (None or 0: no bound).

    Returns:
        The accepted client ids (in the order given) and ``{client: reason}`` for the rejected.
    """
    accepted: list[str] = []
    rejected: dict[str, str] = {}
    bound = max_norm if max_norm else None
    for client, update in updates.items():
        try:
            validate_update(update, reference, client=client, max_norm=bound)
        except UpdateError as exc:
            rejected[client] = str(exc)
        else:
            accepted.append(client)
    return accepted, rejected


def weighted_mean(
    updates: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]
) -> Tensors:
    """``sum_k p_k * update_k`` with ``p_k = w_k / sum_j w_j``, key by key.

    Sums are taken in float64 and cast back to each tensor's dtype, so the result does not depend
    on the order of clients beyond float64 rounding.

    Args:
        updates: one dict per client, all with the same keys, shapes and dtypes.
        weights: one non-negative weight per client (example counts, or 1 for uniform).

    Raises:
        UpdateError: no updates, a weight count mismatch, non-positive total weight, or updates
            whose keys/shapes/dtypes differ.
    """
    if not updates:
        raise UpdateError("nothing to aggregate: no client updates")
    if len(updates) != len(weights):
        raise UpdateError(f"{len(updates)} updates but {len(weights)} weights")
    if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise UpdateError(f"aggregation weights must be finite, >= 0, sum > 0: got {list(weights)}")
    first = updates[0]
    for k, upd in enumerate(updates[1:], start=1):
        if upd.keys() != first.keys():
            diff = sorted(set(upd) ^ set(first))
            raise UpdateError(f"update {k} has keys that differ from update 0: {diff[:3]}")
        for name, t in upd.items():
            if t.shape != first[name].shape or t.dtype != first[name].dtype:
                raise UpdateError(f"update {k}: {name} does not match update 0 in shape or dtype")
    total = float(sum(weights))
    out: Tensors = {}
    for name, ref in first.items():
        acc = torch.zeros(ref.shape, dtype=torch.float64)
        for upd, w in zip(updates, weights, strict=True):
            acc += upd[name].detach().to("cpu", torch.float64) * (w / total)
        out[name] = acc.to(ref.dtype)
    return out
