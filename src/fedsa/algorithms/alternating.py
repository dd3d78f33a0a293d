"""RoLoRA (arXiv 2409.02346): rounds alternate between training B and training A.

In a B round every client trains B (and its head) with A frozen at the global A and uploads B;
in an A round the reverse. The frozen factor is identical on every client, so averaging the
trained one is exact: ``sum_k p_k B_k A_bar = B_bar A_bar``. Round 1 is a B round: with B
initialised to zero, an A round first would learn nothing (the gradient of A is proportional to
B^T = 0). The head (kept on the client unless ``federation.share_head``) trains every round.
Clients always receive both factors, so one that missed rounds is current again at once.
"""

from __future__ import annotations

from fedsa.algorithms.hooks import Phase, RoundPlan
from fedsa.algorithms.spec import Algorithm
from fedsa.config.schema import RunConfig
from fedsa.core.slots import HEAD, A, B, Slot


def b_first_alternation(trains: frozenset[Slot], round_idx: int, cfg: RunConfig) -> RoundPlan:
    """Odd rounds train and send B, even rounds A; the head trains (and, if shared, is sent)."""
    factor = B if round_idx % 2 == 1 else A
    slots = frozenset({factor, HEAD})
    return RoundPlan(phases=(Phase(slots, cfg.federation.local_steps),), sends=slots)


ROLORA = Algorithm(
    name="rolora",
    trains=frozenset({A, B, HEAD}),
    shares=frozenset({A, B}),
    head_configurable=True,
    summary="alternate: B rounds then A rounds, the other factor frozen and common (exact)",
    paper="Chen et al., Robust Federated Finetuning of LLMs via Alternating Optimization of "
    "LoRA, arXiv 2409.02346",
    schedule=b_first_alternation,
)
