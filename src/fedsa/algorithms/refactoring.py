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

from fedsa.adapters.ranks import padded, scale_for
from fedsa.algorithms.aggregate import weighted_mean
from fedsa.algorithms.hooks import Phase, RoundPlan, ServerContext, ServerOutput, Upload
from fedsa.algorithms.lowrank import lora_layers, normalised, split_factors, stacked, svd_of
from fedsa.algorithms.merging import LORA_ONLY, PRODUCT_NOTE
from fedsa.algorithms.spec import Algorithm
from fedsa.config.schema import RunConfig
from fedsa.core.params import Tensors
from fedsa.core.slots import HEAD, A, B, Slot


def flexlora_rule(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
    """SVD of ``sum_k p_k s_k B_k A_k``; every client receives its rank-``r_k`` truncation.

    The singular values are split evenly between B and A (``B = U_r sqrt(S_r/s_k)``, ``A =
    sqrt(S_r/s_k) V_r^T``), so client k's update ``s_k B A`` is the truncation
    ``U_{:r_k} S_{:r_k} V_{:r_k}^T``. Clients of equal rank receive the same factors (in
    ``shared``; other ranks in ``per_client``); other tensors (a shared head) are averaged.
    """
    ups = [u.tensors for u in uploads]
    p = normalised([u.weight for u in uploads])
    heads = [n for n in ups[0] if ctx.slots.get(n) not in (A, B)]
    mean = weighted_mean([{n: u[n] for n in heads} for u in ups], [u.weight for u in uploads])
    shared = {**ctx.shared, **(mean if heads else {})}
    scales = [ctx.scales.get(u.client, ctx.scale) for u in uploads]
    hetero = len(set(ctx.ranks.values())) > 1
    per_client: dict[str, Tensors] = {}
    for layer in lora_layers(ctx.slots):
        bs = [s * u[layer.b].double() for s, u in zip(scales, ups, strict=True)]
        b_stack, a_stack = stacked(bs, [u[layer.a] for u in ups], p)
        u, s, v = svd_of(b_stack, a_stack)
        rank, dtype = ctx.shared[layer.a].shape[0], ctx.shared[layer.a].dtype
        b, a = split_factors(u, s, v, rank, scale_for(ctx.cfg, rank) if hetero else ctx.scale)
        shared[layer.b], shared[layer.a] = b.to(dtype), a.to(dtype)
        for c, r_c in ctx.ranks.items() if hetero else ():
            if r_c != rank:
                b_c, a_c = split_factors(u, s, v, r_c, ctx.scales[c])
                cut = padded({layer.b: b_c.to(dtype), layer.a: a_c.to(dtype)}, ctx.slots, rank)
                per_client.setdefault(c, {}).update(cut)
    return ServerOutput(shared=shared, per_client=per_client)


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
    heterogeneous_ranks=True,
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
