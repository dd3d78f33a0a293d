"""Low-rank linear algebra for server rules that work with adapter products, all in float64.

The exact and aligned methods (FLoRA, FedEx-LoRA, FlexLoRA, FedSVD, FedRot-LoRA) need the same few
operations: find each adapted layer's ``A``, ``B`` and base weight by name, form a weighted sum of
products ``sum_k p_k B_k A_k`` in factored form, and take the thin SVD of a product ``B A``
without forming the dense ``m x n`` matrix. They live here once so that every rule uses the same,
tested orientation: ``nn.Linear`` stores ``W0`` as ``(d_out, d_in) = (m, n)``, ``B`` is ``(m, r)``,
``A`` is ``(r, n)``, and every base change is ``B @ A`` (never its transpose, the FedEx-LoRA
official code's slip that a square layer cannot reveal by shape).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from fedsa.core.params import Tensors
from fedsa.core.slots import A, Slot

A_MARK, B_MARK, BASE_SUFFIX = ".lora_A.", ".lora_B.", ".base_layer.weight"


@dataclass(frozen=True)
class LoraLayer:
    """The parameter names of one adapted layer of PEFT's LoRA (or rsLoRA) default adapter."""

    a: str
    """``...lora_A.default.weight``, shape (r, n)."""
    b: str
    """``...lora_B.default.weight``, shape (m, r)."""
    base: str
    """``...base_layer.weight``, shape (m, n): the frozen ``W0`` of an ``nn.Linear``."""


def lora_layers(slots: Mapping[str, Slot]) -> list[LoraLayer]:
    """Every adapted layer whose ``A`` is in ``slots`` (the default adapter only), in order."""
    layers: list[LoraLayer] = []
    for name, slot in slots.items():
        if slot != A or A_MARK not in name:
            continue
        prefix, rest = name.split(A_MARK, 1)
        layers.append(LoraLayer(a=name, b=f"{prefix}{B_MARK}{rest}", base=prefix + BASE_SUFFIX))
    return layers


def normalised(weights: Sequence[float]) -> list[float]:
    """``p_k = w_k / sum_j w_j`` (a ValueError for an empty or non-positive total)."""
    total = float(sum(weights))
    if not weights or total <= 0:
        raise ValueError(f"aggregation weights must have a positive sum, got {list(weights)}")
    return [float(w) / total for w in weights]


def stacked(
    bs: Sequence[torch.Tensor], as_: Sequence[torch.Tensor], p: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """FLoRA's stacks: ``B_stack = [B_1 ... B_K]`` (m, sum r_k), ``A_stack = [p_1 A_1; ...]``.

    ``B_stack @ A_stack == sum_k p_k B_k A_k`` exactly (up to float64 rounding), any ranks.
    """
    b_stack = torch.cat([b.double() for b in bs], dim=1)
    a_stack = torch.cat([pk * a.double() for pk, a in zip(p, as_, strict=True)], dim=0)
    return b_stack, a_stack


def thin_svd(b: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The thin SVD ``U S V^T`` of ``b @ a`` ((m, q) @ (q, n)) without forming the m x n matrix.

    QR of both factors reduces it to the SVD of a q x q core: ``b = Q_b R_b``, ``a^T = Q_a R_a``,
    ``R_b R_a^T = U_c S V_c^T``, so ``U = Q_b U_c``, ``V = Q_a V_c``. Returns ``U`` (m, q), ``S``
    (q,), ``V`` (n, q) in float64, singular values descending. Requires q <= min(m, n).
    """
    q_b, r_b = torch.linalg.qr(b.double())  # (m, q), (q, q)
    q_a, r_a = torch.linalg.qr(a.double().T)  # (n, q), (q, q)
    u_c, s, vh_c = torch.linalg.svd(r_b @ r_a.T)
    return q_b @ u_c, s, q_a @ vh_c.T


def svd_of(b: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The SVD of ``b @ a`` by :func:`thin_svd` when the inner size allows, else densely."""
    m, q = b.shape
    n = a.shape[1]
    if q <= min(m, n):
        return thin_svd(b, a)
    u, s, vh = torch.linalg.svd(b.double() @ a.double(), full_matrices=False)
    return u, s, vh.T


def split_factors(
    u: torch.Tensor, s: torch.Tensor, v: torch.Tensor, rank: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-``rank`` factors ``(B, A)`` with ``scale * B @ A = U_r S_r V_r^T``.

    The singular values are split evenly (``B = U_r sqrt(S_r / scale)``, ``A = sqrt(S_r / scale)
    V_r^T``), so both factors carry the same norm. If the product has fewer than ``rank``
    components, the remaining columns are zero (B) and orthonormal directions (A).
    """
    k = min(rank, s.numel())
    root = torch.sqrt(s[:k] / scale)
    b = torch.zeros(u.shape[0], rank, dtype=torch.float64)
    a = torch.zeros(rank, v.shape[0], dtype=torch.float64)
    b[:, :k] = u[:, :k] * root
    a[:k] = root[:, None] * v[:, :k].T
    return b, a


def procrustes(m: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """The orthogonal ``R`` maximising ``trace(R^T M)``: ``U V^T`` for ``M = U S V^T``.

    ``lam < 1`` softens it as FedRot-LoRA does: ``(1 - lam) I + lam R``, projected back onto the
    orthogonal matrices (its polar factor), so the client's product stays unchanged. ``lam >= 1``
    is the hard rotation (the official code's default 1.5 takes that path too).
    """
    u, _, vh = torch.linalg.svd(m.double())
    rot: torch.Tensor = u @ vh
    if lam >= 1.0:
        return rot
    eye = torch.eye(rot.shape[0], dtype=torch.float64)
    u2, _, vh2 = torch.linalg.svd((1.0 - lam) * eye + lam * rot)
    soft: torch.Tensor = u2 @ vh2
    return soft


FACTOR_B, FACTOR_A = "@B", "@A"
"""Suffixes of a base change sent as factors: ``W@B`` (m, q) and ``W@A`` (q, n), delta ``B @ A``."""


def compact(
    base: str, b: torch.Tensor, a: torch.Tensor, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """The base change ``b @ a`` of weight ``base`` in its smaller wire form, cast to ``dtype``.

    Factors when ``q (m + n) < m n`` (FedEx-LoRA's residual with few clients, FLoRA's stacks),
    else the dense (m, n) product. Counting bytes of this dict counts what is sent.
    """
    m, q = b.shape
    n = a.shape[1]
    if q * (m + n) < m * n:
        return {base + FACTOR_B: b.to(dtype), base + FACTOR_A: a.to(dtype)}
    return {base: (b.double() @ a.double()).to(dtype)}


def expand(sent: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Dense float64 base deltas from a wire form written by :func:`compact` (the client's step).

    The server applies its rule's ``base_delta`` through this same function, so what a client
    rebuilds from the wire equals what the server holds.
    """
    out: dict[str, torch.Tensor] = {}
    for name, value in sent.items():
        if name.endswith(FACTOR_A):
            continue
        if name.endswith(FACTOR_B):
            base = name[: -len(FACTOR_B)]
            out[base] = value.double() @ sent[base + FACTOR_A].double()
        else:
            out[name] = value.double()
    return out


def wire_targets(sent: Mapping[str, torch.Tensor]) -> list[str]:
    """The base weights a wire form changes, in order."""
    names = [n[: -len(FACTOR_B)] if n.endswith(FACTOR_B) else n for n in sent]
    return [n for n in names if not n.endswith(FACTOR_A)]


def on_the_wire(sent: Mapping[str, torch.Tensor], dtypes: Mapping[str, torch.dtype]) -> Tensors:
    """``sent`` with dense entries cast to their weight's dtype (factors keep theirs)."""
    return {n: v if n.endswith((FACTOR_A, FACTOR_B)) else v.to(dtypes[n]) for n, v in sent.items()}
