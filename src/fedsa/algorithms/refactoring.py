"""Methods whose server re-factorises the aggregate by SVD: FlexLoRA and FedSVD.

FlexLoRA forms ``W_g = sum_k p_k s B_k A_k`` and sends its rank-r truncation back as factors;
it is exact whenever ``W_g`` has rank at most r (always at full rank, r >= min(m, n)) and the
best rank-r approximation otherwise. FedSVD trains B only against a common A, averages B (exact:
``sum_k p_k B_k A = B_bar A``) and every ``fedsvd.svd_period`` rounds re-factorises ``B_bar A =
U S V^T`` as ``A <- V_r^T`` (orthonormal rows), ``B <- U_r S_r``: the product, hence every
client's model, is unchanged by it. Both SVDs are taken in float64 from the factors
(:func:`~fedsa.algorithms.lowrank.svd_of`), never from an m x n matrix where avoidable.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedsa.algorithms.aggregate import weighted_mean
from fedsa.algorithms.hooks import Phase, RoundPlan, ServerContext, ServerOutput, Upload
from fedsa.algorithms.lowrank import lora_layers, normalised, split_factors, stacked, svd_of
from fedsa.algorithms.merging import LORA_ONLY, PRODUCT_NOTE
from fedsa.algorithms.spec import Algorithm
from fedsa.config.schema import RunConfig
from fedsa.core.slots import HEAD, A, B, Slot


def flexlora_rule(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
    """SVD of ``sum_k p_k s B_k A_k``; every client receives the rank-r truncation.

    The singular values are split evenly between B and A (``B = U_r sqrt(S_r/s)``, ``A =
    sqrt(S_r/s) V_r^T``), so ``s B A`` is the truncation. Clients of equal rank receive the same
    factors; other tensors (a shared head) are averaged.
    """
    ups = [u.tensors for u in uploads]
    p = normalised([u.weight for u in uploads])
    shared = {**ctx.shared, **weighted_mean(ups, [u.weight for u in uploads])}
    for layer in lora_layers(ctx.slots):
        b_stack, a_stack = stacked([u[layer.b] for u in ups], [u[layer.a] for u in ups], p)
        u, s, v = svd_of(ctx.scale * b_stack, a_stack)
        rank = ups[0][layer.a].shape[0]
        b, a = split_factors(u, s, v, rank, ctx.scale)
        dtype = ups[0][layer.a].dtype
        shared[layer.b], shared[layer.a] = b.to(dtype), a.to(dtype)
    return ServerOutput(shared=shared)


def fedsvd_rule(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
    """Average B against the common A; every ``svd_period`` rounds re-factorise ``B_bar A``.

    Raises:
        ValueError: the rank exceeds a layer's smaller side (A could not have orthonormal rows).
    """
    mean = weighted_mean([u.tensors for u in uploads], [u.weight for u in uploads])
    shared = {**ctx.shared, **mean}
    if ctx.round % ctx.cfg.fedsvd.svd_period != 0:
        return ServerOutput(shared=shared)
    for layer in lora_layers(ctx.slots):
        b_bar, a = shared[layer.b], shared[layer.a]
        rank, (m, n) = a.shape[0], (b_bar.shape[0], a.shape[1])
        if rank > min(m, n):
            raise ValueError(
                f"fedsvd: adapter.r = {rank} exceeds min(d_out, d_in) = {min(m, n)} of "
                f"{layer.base}: A cannot have orthonormal rows; lower adapter.r"
            )
        u, s, v = svd_of(b_bar, a)  # thin: U (m, r), S (r,), V (n, r)
        shared[layer.b] = (u * s).to(b_bar.dtype)
        shared[layer.a] = v.T.contiguous().to(a.dtype)
    return ServerOutput(shared=shared)


def b_only(trains: frozenset[Slot], round_idx: int, cfg: RunConfig) -> RoundPlan:
    """FedSVD's plan: train B (and the head), send B (and a shared head); A is the server's."""
    return RoundPlan(
        phases=(Phase(trains, cfg.federation.local_steps),), sends=frozenset({B, HEAD})
    )


FLEXLORA = Algorithm(
    name="flexlora",
    trains=frozenset({A, B, HEAD}),
    shares=frozenset({A, B}),
    head_configurable=True,
    summary="server SVD of sum p_k s B_k A_k; each client gets its rank-r truncation",
    paper="Bai et al., Federated Fine-tuning of Large Language Models under Heterogeneous "
    "Tasks and Client Resources, NeurIPS 2024, arXiv 2402.11505",
    variants=LORA_ONLY,
    variant_note=PRODUCT_NOTE,
    server_rule=flexlora_rule,
    individual_uploads="averages every client's product B_k A_k before its SVD",
)

FEDSVD = Algorithm(
    name="fedsvd",
    trains=frozenset({B, HEAD}),
    shares=frozenset({A, B}),
    head_configurable=True,
    summary="train and average B only; server re-factorises B_bar A by SVD (orthonormal A)",
    paper="Lee et al., FedSVD: Adaptive Orthogonalization for Private Federated Learning "
    "with LoRA, arXiv 2505.12805",
    variants=LORA_ONLY,
    variant_note="its SVD re-factorises the product B A, which VeRA's vectors do not form",
    schedule=b_only,
    server_rule=fedsvd_rule,
)
