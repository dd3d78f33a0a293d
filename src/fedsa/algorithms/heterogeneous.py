"""Server rules for clients of different ranks: FedSA-LoRA's per-row mean, HetLoRA and FLoRIST.

Client k uploads factors of its own rank ``r_k`` (``A_k`` (r_k, n), ``B_k`` (m, r_k)) with its
own scale ``s_k`` (:mod:`fedsa.adapters.ranks`); the global factors have rank ``r_max``. What
client k's effective update ``s_k B A`` is after each rule:

* ``fedsa-lora`` (:func:`~fedsa.algorithms.rules.row_mean_rule`): ``A`` is shared. Client k's
  A is the first ``r_k`` rows of the global A; row j of the global A is the mean of the row
  over the clients that hold it (``r_k > j``), with the weights renormalised over them; a row
  no participant holds keeps its value. ``B`` stays local, so the update is
  ``s_k B_k A_g[:r_k]``. With equal ranks this is the plain weighted mean, bit for bit.
* ``hetlora`` (:func:`hetlora_rule`, Cho et al., arXiv 2401.06432): ``B_k`` is taken in
  effective units ``s_k B_k`` (so that truncation keeps the meaning of a component whatever
  ``s_k``: METHODS.md's pitfall), both factors are zero-padded to ``r_max`` and averaged with
  weights ``p_k = ||s_k B_k A_k||_F / sum_j ||s_j B_j A_j||_F`` per layer (the paper's
  norm weighting; example counts do not enter); client k receives the first ``r_k``
  components, ``A_g[:r_k]`` and ``B~_g[:, :r_k] / s_k``, so its update is ``B~_g[:, :r_k]
  A_g[:r_k]``, the global effective factors truncated to its rank. The head is averaged with
  the usual weights when shared. Optional rank self-pruning (``hetlora.prune_gamma``,
  :func:`self_prune`) lets a client drop trailing components its update hardly uses.
* ``florist`` (:func:`florist_rule`, arXiv 2506.09199): FLoRA's stack with blocks ``s_k B_k``
  gives ``sum_k p_k s_k B_k A_k`` in factored form; its exact thin SVD (QR of both stacks and an
  SVD of the small core, :func:`~fedsa.algorithms.lowrank.thin_svd`) is cut at the smallest
  ``q`` whose squared singular values reach ``florist.tau`` of the energy, and ``U_q S_q
  V_q^T`` is merged into every client's W0; every client restarts from the common fresh LoRA
  (cut to its rank), so its update is the merged sum plus its own new ``s_k B_k A_k``. Exact
  at ``tau = 1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from fedsa.adapters.ranks import padded, scale_for
from fedsa.algorithms.aggregate import weighted_mean
from fedsa.algorithms.hooks import ServerContext, ServerOutput, Upload
from fedsa.algorithms.lowrank import compact, lora_layers, normalised, stacked, svd_of
from fedsa.algorithms.merging import INIT, LORA_ONLY, PRODUCT_NOTE, initial_factors
from fedsa.algorithms.spec import Algorithm
from fedsa.config.schema import RunConfig
from fedsa.core.params import Tensors
from fedsa.core.slots import HEAD, A, B, Slot


def _scale(ctx: ServerContext, client: str) -> float:
    return ctx.scales.get(client, ctx.scale)


def hetlora_rule(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
    """Zero-pad to ``r_max``, average with weights ``||s_k B_k A_k||_F``; clients get a prefix.

    The global B is kept in effective units (``s_k B_k``); ``shared`` holds the view of a
    rank-``r_max`` client and ``per_client`` each other client's B (``B~_g / s_k``).
    """
    slots = ctx.slots
    r_max = ctx.max_rank or max(u.tensors[n].shape[0] for u in uploads for n in u.tensors
                                if slots.get(n) == A)  # fmt: skip
    shared = dict(ctx.shared)
    eff: Tensors = {}
    for layer in lora_layers(slots):
        scales = [_scale(ctx, u.client) for u in uploads]
        bs = [s * u.tensors[layer.b].double() for s, u in zip(scales, uploads, strict=True)]
        as_ = [u.tensors[layer.a].double() for u in uploads]
        norms = [float(torch.linalg.matrix_norm(b @ a)) for b, a in zip(bs, as_, strict=True)]
        # all-zero products (the first round of a zero-initialised B) fall back to equal weights
        p = normalised(norms) if sum(norms) > 0 else normalised([1.0] * len(uploads))
        pad = {layer.a: as_, layer.b: bs}
        for name, values in pad.items():
            full = [padded({name: v}, slots, r_max)[name] for v in values]
            eff[name] = sum((pk * v for pk, v in zip(p, full, strict=True)),
                            torch.zeros_like(full[0]))  # fmt: skip
        dtype = ctx.shared[layer.a].dtype
        shared[layer.a] = eff[layer.a].to(dtype)
        shared[layer.b] = (eff[layer.b] / scale_for(ctx.cfg, r_max)).to(dtype)
    heads = [n for n in uploads[0].tensors if slots.get(n) == HEAD]
    if heads:
        shared.update(weighted_mean([{n: u.tensors[n] for n in heads} for u in uploads],
                                    [u.weight for u in uploads]))  # fmt: skip
    per_client: dict[str, Tensors] = {}
    for c in ctx.client_ids:
        s_c = _scale(ctx, c)
        if ctx.ranks.get(c, r_max) != r_max:
            per_client[c] = {layer.b: (eff[layer.b] / s_c).to(ctx.shared[layer.b].dtype)
                             for layer in lora_layers(slots)}  # fmt: skip
    return ServerOutput(shared=shared, per_client=per_client, state=dict(ctx.state))


def self_prune(upload: Tensors, slots: Mapping[str, Slot], scale: float, cfg: RunConfig) -> int:
    """HetLoRA's rank self-pruning, with a criterion that needs no memory across rounds.

    With ``gamma = hetlora.prune_gamma`` and the client's current rank r, the tail is every
    component past ``k = ceil(gamma r)``; the client keeps k if the tail's share of its update,
    ``||s_k B_tail A_tail||_F / ||s_k B A||_F`` over all adapted layers, is below
    ``hetlora.prune_threshold``, else r. (The paper compares the tail's norm with the previous
    round's and adds a penalty on it to the local loss; neither is done here: the decision is a
    function of this round's upload alone, so it is reproduced exactly on resume.)
    """
    gamma, threshold = cfg.hetlora.prune_gamma, cfg.hetlora.prune_threshold
    layers = [layer for layer in lora_layers(slots) if layer.a in upload and layer.b in upload]
    rank = int(upload[layers[0].a].shape[0]) if layers else 0
    keep = max(1, math.ceil(gamma * rank))
    if not gamma or keep >= rank:
        return rank
    total = tail = 0.0
    for layer in layers:
        a, b = upload[layer.a].double(), scale * upload[layer.b].double()
        total += float((b @ a).pow(2).sum())
        tail += float((b[:, keep:] @ a[keep:]).pow(2).sum())
    return keep if total > 0 and math.sqrt(tail / total) < threshold else rank


def kept_rank(s: torch.Tensor, tau: float) -> int:
    """FLoRIST's rank: the fewest leading singular values whose squares reach ``tau`` of the sum.

    ``s`` is descending; at least 1 is kept (an all-zero spectrum keeps 1 zero component).
    """
    energy = s.double().pow(2)
    total = float(energy.sum())
    if total <= 0:
        return 1
    reached = torch.cumsum(energy, 0) >= tau * total * (1 - 1e-12)
    return int(torch.nonzero(reached)[0]) + 1


def florist_rule(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
    """FLoRA's scale-corrected stack, truncated by energy, merged into W0; fresh adapters."""
    initial = initial_factors(ctx)
    p = normalised([u.weight for u in uploads])
    sent: Tensors = {}
    for layer in lora_layers(ctx.slots):
        scaled = [_scale(ctx, u.client) * u.tensors[layer.b].double() for u in uploads]
        b_stack, a_stack = stacked(scaled, [u.tensors[layer.a] for u in uploads], p)
        u_, s, v = svd_of(b_stack, a_stack)  # U (m, q), S (q,), V (n, q)
        q = kept_rank(s, ctx.cfg.florist.tau)
        dtype = uploads[0].tensors[layer.a].dtype
        sent.update(compact(layer.base, u_[:, :q] * s[:q], v[:, :q].T, dtype))
    heads = [n for n in uploads[0].tensors if ctx.slots.get(n) == HEAD]
    mean = weighted_mean([{n: u.tensors[n] for n in heads} for u in uploads],
                         [u.weight for u in uploads]) if heads else {}  # fmt: skip
    return ServerOutput(
        shared={**ctx.shared, **mean, **initial},
        base_delta=sent,
        state={INIT + k: v for k, v in initial.items()},
    )


HETLORA = Algorithm(
    name="hetlora",
    trains=frozenset({A, B, HEAD}),
    shares=frozenset({A, B}),
    head_configurable=True,
    summary="zero-pad ranks, average with weights ||s_k B_k A_k||_F; each client gets a prefix",
    paper="Cho et al., Heterogeneous LoRA for Federated Fine-tuning of On-Device Foundation "
    "Models, EMNLP 2024, arXiv 2401.06432",
    variants=LORA_ONLY,
    variant_note=PRODUCT_NOTE,
    heterogeneous_ranks=True,
    server_rule=hetlora_rule,
    prune=self_prune,
    individual_uploads="weights each client by the norm of its own product B_k A_k",
)

FLORIST = Algorithm(
    name="florist",
    trains=frozenset({A, B, HEAD}),
    shares=frozenset({A, B}),
    head_configurable=True,
    summary="FLoRA's stack, SVD kept to energy florist.tau, merged into W0; fresh LoRA",
    paper="Ramesh and Dass, FLoRIST: Singular Value Thresholding for Efficient and Accurate "
    "Federated Fine-Tuning of Large Language Models, MLSys 2026, arXiv 2506.09199",
    variants=LORA_ONLY,
    variant_note=PRODUCT_NOTE,
    merges_into_linear=True,
    heterogeneous_ranks=True,
    server_rule=florist_rule,
    individual_uploads="stacks every client's A and B",
)
