"""Methods that merge the aggregated product into the base weights: FLoRA and FedEx-LoRA.

Both are exact: after the server's step, every client's effective weight ``W0 + s B A`` (base as
changed so far, adapter as received) equals the weighted mean ``sum_k p_k (W0 + s B_k A_k)`` of
the clients' trained models. The base change travels in factored form when that is smaller
(:func:`~fedsa.algorithms.lowrank.compact`); server and clients apply exactly what is sent,
with the scale ``s`` folded into the B-side factor (a zoo implementation dropped it) and
``B @ A`` in ``nn.Linear``'s (d_out, d_in) orientation (FedEx-LoRA's code added the
transpose, which only GPT-2's ``Conv1D`` wants).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from fedsa.algorithms.aggregate import weighted_mean
from fedsa.algorithms.hooks import ServerContext, ServerOutput, Upload
from fedsa.algorithms.lowrank import compact, lora_layers, normalised, stacked
from fedsa.algorithms.spec import Algorithm
from fedsa.core.params import Tensors
from fedsa.core.slots import HEAD, A, B

INIT = "init/"
LORA_ONLY = frozenset({"lora", "rslora"})
PRODUCT_NOTE = "it merges dense products s B A, which VeRA's scaled frozen projections do not have"


def _weights(uploads: Sequence[Upload]) -> tuple[list[float], list[Tensors]]:
    """Normalised weights ``p_k`` and the uploaded tensors, in the same order."""
    return normalised([u.weight for u in uploads]), [u.tensors for u in uploads]


def initial_factors(ctx: ServerContext) -> Tensors:
    """The common fresh adapter (A, B) clients restart from (the rule's state after round 1)."""
    initial = {k[len(INIT) :]: v for k, v in ctx.state.items() if k.startswith(INIT)}
    return initial or {n: v for n, v in ctx.shared.items() if ctx.slots[n] in (A, B)}


def flora_rule(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
    """Stack the clients' factors, merge ``B_stack A_stack`` into W0, restart every adapter.

    ``B_stack = [s_1 B_1 ... s_K B_K]``, ``A_stack = [p_1 A_1; ...]``, so ``B_stack A_stack =
    sum_k p_k s_k B_k A_k`` with each client's own scale (ranks may differ: the blocks are
    scale-corrected, unlike the official zero-padding baseline's alpha * max(r)). The fresh
    adapter each client restarts from is the common seeded initial one (:func:`initial_factors`,
    cut to each client's rank when sent). A shared head is averaged as usual.
    """
    initial = initial_factors(ctx)
    p, ups = _weights(uploads)
    scales = [ctx.scales.get(u.client, ctx.scale) for u in uploads]
    sent: Tensors = {}
    for layer in lora_layers(ctx.slots):
        bs = [s * u[layer.b].double() for s, u in zip(scales, ups, strict=True)]
        b_stack, a_stack = stacked(bs, [u[layer.a] for u in ups], p)
        sent.update(compact(layer.base, b_stack, a_stack, ups[0][layer.a].dtype))
    heads = [n for n in ups[0] if ctx.slots[n] == HEAD]
    mean = weighted_mean([{n: u[n] for n in heads} for u in ups], [u.weight for u in uploads])
    return ServerOutput(
        shared={**ctx.shared, **mean, **initial},
        base_delta=sent,
        state={INIT + k: v for k, v in initial.items()},
    )


def fedex_rule(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
    """FedIT's means plus the exact residual ``R = sum_k p_k B_k A_k - B_bar A_bar``, merged.

    ``R = sum_k p_k (B_k - B_bar)(A_k - A_bar)`` is sent as the factors ``[sqrt(p_k)(B_k -
    B_bar)]`` (m, K r) and ``[sqrt(p_k)(A_k - A_bar)]`` (K r, n), or dense when smaller, and
    weighted by ``p_k`` (the official code averages unweighted). Means are float64 here; the
    float32 means clients install differ from them by rounding only.
    """
    p, ups = _weights(uploads)
    shared = {**ctx.shared, **weighted_mean(ups, [u.weight for u in uploads])}
    sent: Tensors = {}
    for layer in lora_layers(ctx.slots):
        bs = [u[layer.b].double() for u in ups]
        as_ = [u[layer.a].double() for u in ups]
        b_bar = sum(pk * b for pk, b in zip(p, bs, strict=True))
        a_bar = sum(pk * a for pk, a in zip(p, as_, strict=True))
        assert isinstance(b_bar, torch.Tensor) and isinstance(a_bar, torch.Tensor)
        db = torch.cat([math.sqrt(pk) * (b - b_bar) for pk, b in zip(p, bs, strict=True)], dim=1)
        da = torch.cat([math.sqrt(pk) * (a - a_bar) for pk, a in zip(p, as_, strict=True)], dim=0)
        sent.update(compact(layer.base, ctx.scale * db, da, ups[0][layer.a].dtype))
    return ServerOutput(shared=shared, base_delta=sent)


FLORA = Algorithm(
    name="flora",
    trains=frozenset({A, B, HEAD}),
    shares=frozenset({A, B}),
    head_configurable=True,
    summary="stack clients' A, B; every client merges s*B_stack A_stack into W0, fresh LoRA",
    paper="Wang et al., FLoRA: Federated Fine-Tuning Large Language Models with Heterogeneous "
    "Low-Rank Adaptations, NeurIPS 2024, arXiv 2409.05976",
    variants=LORA_ONLY,
    variant_note=PRODUCT_NOTE,
    merges_into_linear=True,
    heterogeneous_ranks=True,
    server_rule=flora_rule,
    individual_uploads="stacks every client's A and B",
)

FEDEX_LORA = Algorithm(
    name="fedex-lora",
    trains=frozenset({A, B, HEAD}),
    shares=frozenset({A, B}),
    head_configurable=True,
    summary="FedIT plus the exact residual sum p_k B_k A_k - B_bar A_bar merged into W0",
    paper="Singhal et al., FedEx-LoRA: Exact Aggregation for Federated and Efficient "
    "Fine-Tuning of Foundation Models, arXiv 2410.09432",
    variants=LORA_ONLY,
    variant_note=PRODUCT_NOTE,
    alignable=True,
    merges_into_linear=True,
    server_rule=fedex_rule,
    individual_uploads="needs every client's product B_k A_k for its residual",
)
