"""The algorithms that are data alone: what trains, what is shared, what stays on the client.

Each is a few lines: no hook differs from the defaults (the same plan every round, the weighted
mean on the server, every tensor written as received), except that FedSA-LoRA's mean is taken
per rank row so that clients may have different ranks (``rules.row_mean_rule``: the plain
weighted mean when ranks are equal). Compare the table in the README.
"""

from __future__ import annotations

from fedsa.algorithms.rules import row_mean_rule
from fedsa.algorithms.spec import Algorithm
from fedsa.core.slots import HEAD, A, B

FEDSA_LORA = Algorithm(
    name="fedsa-lora",
    trains=frozenset({A, B, HEAD}),
    shares=frozenset({A}),
    head_configurable=False,
    summary="share and average A; keep B and the head per client (personalised)",
    paper="Guo et al., Selective Aggregation for LoRA in Federated Learning, "
    "ICLR 2025, arXiv 2410.01463",
    alignable=True,
    heterogeneous_ranks=True,
    server_rule=row_mean_rule,
)

FEDIT = Algorithm(
    name="fedit",
    trains=frozenset({A, B, HEAD}),
    shares=frozenset({A, B}),
    head_configurable=True,
    summary="LoRA-FedAvg: train and average both A and B",
    paper="Zhang et al., Towards Building the Federated GPT: Federated Instruction "
    "Tuning, arXiv 2305.05644",
    alignable=True,
)

FED_ALORA = Algorithm(
    name="fed-alora",
    trains=frozenset({A, B, HEAD}),
    shares=frozenset({B}),
    head_configurable=False,
    summary="the mirror of FedSA-LoRA: share and average B; keep A and the head per client",
    paper="Ban and Ji, Rethinking Parameter Sharing for LLM Fine-Tuning with Multiple "
    "LoRAs (ALoRA / Fed-ALoRA), arXiv 2509.25414",
    alignable=True,
)

FFA_LORA = Algorithm(
    name="ffa-lora",
    trains=frozenset({B, HEAD}),
    shares=frozenset({B}),
    head_configurable=True,
    summary="A random, identical on all clients and frozen; train and average B",
    paper="Sun et al., Improving LoRA in Privacy-preserving Federated Learning, "
    "ICLR 2024, arXiv 2403.12313",
)

LOCAL_ONLY = Algorithm(
    name="local-only",
    trains=frozenset({A, B, HEAD}),
    shares=frozenset(),
    head_configurable=False,
    summary="reference: every client trains alone, nothing is sent",
    paper="reference point (no federation)",
    heterogeneous_ranks=True,
)

CENTRALIZED = Algorithm(
    name="centralized",
    trains=frozenset({A, B, HEAD}),
    shares=frozenset({A, B, HEAD}),
    head_configurable=False,
    summary="reference: one model on the pooled data, same step budget, nothing sent",
    paper="reference point (upper bound without data separation)",
    pooled=True,
)
