"""What an algorithm is: data for what trains and what is shared, named hooks for the rest.

Most federated LoRA methods differ only in which *slots* of the adapter train on the client and
which are sent to the server and averaged. That stays data (:class:`Algorithm` fields), so
FedSA-LoRA, FedIT, FFA-LoRA and local-only are a few lines each (:mod:`fedsa.algorithms.basic`):

* a slot that trains and is shared is overwritten by the server's output every round;
* a slot that trains and is not shared is private: stored per client and restored exactly;
* a slot that does not train is frozen at the common initial value (identical on every client,
  never sent: FFA-LoRA's ``A``), unless it is shared, in which case only the server changes it.

Whatever is not data is one named, typed hook with a default, in the spirit of a Flower strategy
overriding one method (no implementation inheritance):

* :data:`RoundSchedule`: which slots train (in which local phases) and which are sent in round t;
* :data:`ServerRule`: a pure function from the round's accepted uploads and the server state to
  what clients receive (the same tensors for all, or per client), optional base-weight deltas
  and the next server state (:mod:`fedsa.algorithms.rules`);
* :data:`InstallStep`: how a client puts what it received into its model
  (:mod:`fedsa.algorithms.install`);
* :data:`ModelHook` and :data:`ClientEvaluator`: extra adapters and a special inference mix
  (FedDPA, :mod:`fedsa.algorithms.feddpa`).

Slots are ``A`` (the down-projection side of the low-rank update), ``B`` (the up-projection
side), ``head`` (the task head) and FedDPA's ``A_local``/``B_local``. How a slot maps to parameter
names is the adapter variant's job (:mod:`fedsa.adapters.variants`), so ``fedsa-lora`` over
``vera`` is FedSA-VeRA with no new code.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsa.algorithms.hooks import (
    ClientEvaluator,
    InstallStep,
    ModelHook,
    PruneStep,
    RoundSchedule,
    ServerRule,
    same_every_round,
    task_evaluation,
)
from fedsa.algorithms.install import write_all
from fedsa.algorithms.rules import weighted_mean_rule
from fedsa.core.slots import HEAD, SLOTS, Slot


@dataclass(frozen=True)
class Algorithm:
    """What trains, what is shared and what stays local, plus the hooks where data is not enough."""

    name: str
    """Kebab-case id, identical in configs, the CLI and reports."""
    trains: frozenset[Slot]
    """Slots optimised during local training (in some round)."""
    shares: frozenset[Slot]
    """Slots the server owns: sent to clients and replaced by the server rule's output (the head
    is added by ``share_head``)."""
    head_configurable: bool
    """Whether ``federation.share_head`` may move the head into ``shares``."""
    summary: str
    """One line for ``fedsa list``."""
    paper: str
    """Citation of the method's paper."""
    pooled: bool = False
    """Reference only: one model trained on the union of all clients' data (no federation)."""
    variants: frozenset[str] | None = None
    """Adapter variants the algorithm supports (None: all)."""
    variant_note: str = ""
    """Why the other variants are refused (shown in the one-line error)."""
    alignable: bool = False
    """Whether ``federation.align = "rotation"`` applies: it trains A and B together and the
    server averages a trained factor (FedRot-LoRA's precondition)."""
    aligned: bool = False
    """Rotational alignment always on, whatever ``federation.align`` says (``fedrot-lora``)."""
    merges_into_linear: bool = False
    """Its rule adds ``B @ A`` to base weights stored (d_out, d_in), as ``nn.Linear`` does; a
    model whose adapted layers are stored transposed (GPT-2's ``Conv1D``) is refused."""
    heterogeneous_ranks: bool = False
    """Whether clients may have their own ranks (``adapter.client_ranks``): its rule takes
    uploads of rank ``r_k`` and says what client k receives."""
    individual_uploads: str = ""
    """Why its server rule needs each client's factors, not only their mean (empty: it needs
    only the mean): such a rule cannot take central DP noise on a sum (``privacy.mode``)."""
    schedule: RoundSchedule = same_every_round
    """Which slots train in which local phase of round t, and which are uploaded."""
    server_rule: ServerRule = weighted_mean_rule
    """From the round's accepted uploads to what clients receive next (and the server state)."""
    install: InstallStep = write_all
    """How a client writes what it received and its own state into the model."""
    prune: PruneStep | None = None
    """Rank self-pruning after local training (None: ranks stay as configured)."""
    extend_model: ModelHook | None = None
    """Extra adapters on the freshly built PEFT model (None: none)."""
    evaluate: ClientEvaluator = task_evaluation
    """How a client's personalised model is scored (default: the task's own scorer)."""

    def supports(self, variant: str) -> bool:
        """Whether this algorithm can run over the adapter ``variant``."""
        return self.variants is None or variant in self.variants

    def rotates(self, align: str) -> bool:
        """Whether clients rotate their factors before uploading under ``federation.align``."""
        return self.aligned or (self.alignable and align == "rotation")

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
