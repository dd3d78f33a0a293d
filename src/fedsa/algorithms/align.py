"""Rotational alignment (FedRot-LoRA, arXiv 2602.23638): a client step before the upload.

LoRA factors are defined only up to an invertible r x r mix: ``B A = (B R)(R^T A)`` for any
orthogonal R. Clients trained from the same start drift into different such mixes, and averaging
factors separately then pays the error ``sum_k p_k B_k A_k - B_bar A_bar``. Before uploading,
each client rotates its factors towards the global ones it received with the orthogonal
Procrustes solution: ``M = A_k A_bar^T`` (r x r), ``R = U V^T``, ``A_k <- R^T A_k``,
``B_k <- B_k R`` (or, when only B is shared, ``M = B_k^T B_bar``). The client's product, hence
its model, is unchanged; only the coordinates in which it is averaged move. With FedSA-LoRA the
local B is rotated together with the uploaded A, so the client keeps exactly its product.

``federation.align = "rotation"`` turns it on for any method that trains both factors and
averages one (``Algorithm.alignable``); ``fedrot-lora`` is FedIT with it always on, the paper's
default. ``federation.align_lambda`` softens the rotation (see
:func:`~fedsa.algorithms.lowrank.procrustes`).
"""

from __future__ import annotations

import dataclasses

import torch

from fedsa.adapters.layout import Layout
from fedsa.algorithms.basic import FEDIT
from fedsa.algorithms.lowrank import lora_layers, procrustes
from fedsa.core.params import Tensors, read_from, write_into


def aligned_pair(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    a_ref: torch.Tensor | None = None,
    b_ref: torch.Tensor | None = None,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R^T A, B R)`` in float64, R the Procrustes rotation towards ``a_ref`` (else ``b_ref``).

    ``a`` is (r, n), ``b`` (m, r); ``(B R)(R^T A) = B A`` for every orthogonal R.
    """
    if a_ref is not None:
        rot = procrustes(a.double() @ a_ref.double().T, lam)  # M = A_k A_bar^T (r, r)
    elif b_ref is not None:
        rot = procrustes(b.double().T @ b_ref.double(), lam)  # M = B_k^T B_bar (r, r)
    else:
        raise ValueError("aligned_pair needs a_ref or b_ref")
    return rot.T @ a.double(), b.double() @ rot


def rotate_to_received(
    model: torch.nn.Module, layout: Layout, received: Tensors, lam: float
) -> None:
    """Rotate every layer's trained (A, B) in ``model`` towards the received global factor.

    A is aligned when it is shared (FedIT, FedSA-LoRA, FedEx-LoRA), else B (Fed-ALoRA).
    """
    shared = set(layout.shared)
    for layer in lora_layers(layout.slots):
        if layer.a not in shared and layer.b not in shared:
            continue
        cur = read_from(model, [layer.a, layer.b])
        a, b = aligned_pair(
            cur[layer.a],
            cur[layer.b],
            a_ref=received[layer.a] if layer.a in shared else None,
            b_ref=received[layer.b] if layer.a not in shared else None,
            lam=lam,
        )
        write_into(model, {layer.a: a.to(cur[layer.a].dtype), layer.b: b.to(cur[layer.b].dtype)})


FEDROT_LORA = dataclasses.replace(
    FEDIT,
    name="fedrot-lora",
    summary="FedIT with rotational alignment: clients rotate A_k, B_k towards the global factors",
    paper="Zhang et al., FedRot-LoRA: Mitigating Rotational Misalignment in Federated LoRA, "
    "arXiv 2602.23638",
    variants=frozenset({"lora", "rslora"}),
    variant_note="a rotation mixes the rank components of A and B, which VeRA's diagonal "
    "vectors cannot represent",
    aligned=True,
)
