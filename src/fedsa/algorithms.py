"""Federated algorithms as data.

An algorithm does not own code paths: it says which *slots* of the adapter train on the client
and which are sent to the server and averaged. Everything else follows mechanically:

* a slot that trains and is shared is overwritten by the global aggregate every round;
* a slot that trains and is not shared is private: stored per client and restored exactly;
* a slot that does not train is frozen at the common initial value (identical on every client,
  never sent: FFA-LoRA's ``A``).

Slots are ``A`` (the down-projection side of the low-rank update), ``B`` (the up-projection side)
and ``head`` (the task head). How a slot maps to parameter names is the adapter variant's job
(:mod:`fedsa.adapters`), so ``fedsa-lora`` over ``vera`` is FedSA-VeRA with no new code.
"""

from __future__ import annotations

from dataclasses import dataclass

Slot = str
A: Slot = "A"
B: Slot = "B"
HEAD: Slot = "head"
A_LOCAL: Slot = "A_local"
B_LOCAL: Slot = "B_local"
"""Slots of FedDPA's second (local) adapter."""
SLOTS: tuple[Slot, ...] = (A, B, HEAD, A_LOCAL, B_LOCAL)


@dataclass(frozen=True)
class Algorithm:
    """What trains, what is shared and what stays local, plus where it comes from."""

    name: str
    """Kebab-case id, identical in configs, the CLI and reports."""
    trains: frozenset[Slot]
    """Slots optimised during local training."""
    shares: frozenset[Slot]
    """Slots uploaded and averaged by the server (the head is added by ``share_head``)."""
    head_configurable: bool
    """Whether ``federation.share_head`` may move the head into ``shares``."""
    summary: str
    """One line for ``fedsa list``."""
    paper: str
    """Citation of the method's paper."""
    pooled: bool = False
    """Reference only: one model trained on the union of all clients' data (no federation)."""
    dual_adapter: bool = False
    """A second, local adapter beside the global one (FedDPA); its slots are A_local, B_local."""
    phases: tuple[frozenset[Slot], ...] = ()
    """Local training in consecutive phases, each training only these slots (empty: one phase
    training every slot in ``trains``)."""
    variants: frozenset[str] | None = None
    """Adapter variants the algorithm supports (None: all)."""

    def supports(self, variant: str) -> bool:
        """Whether this algorithm can run over the adapter ``variant``."""
        return self.variants is None or variant in self.variants

    def shared_slots(self, share_head: bool) -> frozenset[Slot]:
        """Slots sent to the server under the given head policy."""
        if share_head and self.head_configurable:
            return self.shares | {HEAD}
        return self.shares

    def private_slots(self, share_head: bool) -> frozenset[Slot]:
        """Slots that train but stay on the client (the personalised part)."""
        return self.trains - self.shared_slots(share_head)

    def frozen_slots(self) -> frozenset[Slot]:
        """Slots that never train: fixed at the common initial value on every client."""
        return frozenset(SLOTS) - self.trains


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm(
            name="fedsa-lora",
            trains=frozenset({A, B, HEAD}),
            shares=frozenset({A}),
            head_configurable=False,
            summary="share and average A; keep B and the head per client (personalised)",
            paper="Guo et al., Selective Aggregation for LoRA in Federated Learning, "
            "ICLR 2025, arXiv 2410.01463",
        ),
        Algorithm(
            name="fedit",
            trains=frozenset({A, B, HEAD}),
            shares=frozenset({A, B}),
            head_configurable=True,
            summary="LoRA-FedAvg: train and average both A and B",
            paper="Zhang et al., Towards Building the Federated GPT: Federated Instruction "
            "Tuning, arXiv 2305.05644",
        ),
        Algorithm(
            name="ffa-lora",
            trains=frozenset({B, HEAD}),
            shares=frozenset({B}),
            head_configurable=True,
            summary="A random, identical on all clients and frozen; train and average B",
            paper="Sun et al., Improving LoRA in Privacy-preserving Federated Learning, "
            "ICLR 2024, arXiv 2403.12313",
        ),
        Algorithm(
            name="feddpa",
            trains=frozenset({A, B, HEAD, A_LOCAL, B_LOCAL}),
            shares=frozenset({A, B}),
            head_configurable=True,
            summary="FedDPA-T: global adapter averaged, local adapter kept; instance-wise mix",
            paper="Yang et al., Dual-Personalizing Adapter for Federated Foundation Models, "
            "NeurIPS 2024, arXiv 2403.19211",
            dual_adapter=True,
            phases=(frozenset({A, B, HEAD}), frozenset({A_LOCAL, B_LOCAL, HEAD})),
            variants=frozenset({"lora", "rslora"}),
        ),
        Algorithm(
            name="local-only",
            trains=frozenset({A, B, HEAD}),
            shares=frozenset(),
            head_configurable=False,
            summary="reference: every client trains alone, nothing is sent",
            paper="reference point (no federation)",
        ),
        Algorithm(
            name="centralized",
            trains=frozenset({A, B, HEAD}),
            shares=frozenset({A, B, HEAD}),
            head_configurable=False,
            summary="reference: one model on the pooled data, same step budget, nothing sent",
            paper="reference point (upper bound without data separation)",
            pooled=True,
        ),
    )
}
