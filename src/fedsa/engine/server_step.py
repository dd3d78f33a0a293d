"""The server half of a round, shared by the in-process engine and the Flower ServerApp.

What the server holds between rounds is a :class:`ServerState`: the global shared tensors, any
per-client tensors a rule produced, the base-weight changes accumulated so far, and the rule's own
state. :func:`server_update` screens nothing and knows no algorithm: it calls the algorithm's
server rule on the accepted uploads and folds the output into the next state. Both engines call
it, so no server rule has a second implementation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from fedsa.adapters.layout import Layout
from fedsa.adapters.ranks import (
    at_rank,
    client_rank,
    client_scale,
    held_rank,
    heterogeneous,
    max_rank,
)
from fedsa.algorithms.aggregate import screen_updates
from fedsa.algorithms.hooks import ServerContext, Upload
from fedsa.algorithms.lowrank import expand, on_the_wire, wire_targets
from fedsa.algorithms.spec import Algorithm
from fedsa.config.schema import RunConfig
from fedsa.core.params import Tensors, clone, select
from fedsa.privacy.mechanism import private_rule

BaseReader = Callable[[Iterable[str]], Tensors]
"""Reads the current values of base-model weights by name (the server's copy of the model)."""

_PER_CLIENT, _BASE, _RULE = "per_client/", "base/", "rule/"
_SENT, _SYNCED, _ROUNDS = "base_sent/", "base_synced/", "base_rounds"
_RANKS = "rank/"


@dataclass
class ServerState:
    """Everything the server carries from one round to the next (checkpointed whole)."""

    shared: Tensors
    """Global shared tensors: what every client receives unless ``per_client`` overrides."""
    per_client: dict[str, Tensors] = field(default_factory=dict)
    """Tensors for particular clients, replacing same-named ones of ``shared``."""
    base: Tensors = field(default_factory=dict)
    """Absolute current values of base weights the server has changed (empty: none)."""
    rule: Tensors = field(default_factory=dict)
    """The server rule's own state."""
    base_sent: Tensors = field(default_factory=dict)
    """The latest base change in the form it travels (factors or dense)."""
    base_round: int = 0
    """The round of the latest base change (0: none yet)."""
    base_prev: int = 0
    """The round of the base change before it: a client holding that base needs only
    ``base_sent``; one further behind gets the changed weights dense."""
    synced: dict[str, int] = field(default_factory=dict)
    """Per client, the ``base_round`` of the base it holds (absent: the initial base)."""
    ranks: dict[str, int] = field(default_factory=dict)
    """Per client that pruned its rank (HetLoRA's self-pruning), the rank it keeps."""

    def sent_to(self, client: str) -> Tensors:
        """The shared tensors client ``client`` receives."""
        return {**self.shared, **self.per_client.get(client, {})}

    def base_payload(self, client: str) -> tuple[str, Tensors]:
        """What ``client`` must receive to hold the current base, and in which form.

        ``("", {})`` when it is current; ``("merge", wire)`` with the latest change's wire form
        when it holds the previous base (or the initial one, if the latest change is the
        first); else ``("base", absolute values of the changed weights)``. Marks the client
        current (an engine that learns the message was lost calls :meth:`forget`).
        """
        held = self.synced.get(client, 0)
        if self.base_round == 0 or held == self.base_round:
            return "", {}
        self.synced[client] = self.base_round
        if held == self.base_prev:
            return "merge", self.base_sent
        return "base", self.base

    def forget(self, client: str) -> None:
        """The client may not hold the latest base: send it the changed weights next time."""
        self.synced.pop(client, None)

    def extra_tensors(self) -> Tensors:
        """Everything but ``shared``, flattened with prefixes for one safetensors file."""
        out: Tensors = {f"{_BASE}{k}": v for k, v in self.base.items()}
        out.update({f"{_RULE}{k}": v for k, v in self.rule.items()})
        if self.base_round:
            out.update({f"{_SENT}{k}": v for k, v in self.base_sent.items()})
            out.update({f"{_SYNCED}{c}": torch.tensor(r) for c, r in self.synced.items()})
            out[_ROUNDS] = torch.tensor([self.base_round, self.base_prev])
        for client, tensors in self.per_client.items():
            out.update({f"{_PER_CLIENT}{client}/{k}": v for k, v in tensors.items()})
        out.update({f"{_RANKS}{c}": torch.tensor(r) for c, r in self.ranks.items()})
        return out

    @classmethod
    def restore(cls, shared: Tensors, extra: Mapping[str, torch.Tensor]) -> ServerState:
        """The inverse of :meth:`extra_tensors`, given the shared tensors."""
        state = cls(shared=dict(shared))
        for key, value in extra.items():
            if key.startswith(_BASE):
                state.base[key[len(_BASE) :]] = value
            elif key.startswith(_RULE):
                state.rule[key[len(_RULE) :]] = value
            elif key.startswith(_SENT):
                state.base_sent[key[len(_SENT) :]] = value
            elif key.startswith(_SYNCED):
                state.synced[key[len(_SYNCED) :]] = int(value)
            elif key.startswith(_RANKS):
                state.ranks[key[len(_RANKS) :]] = int(value)
            elif key == _ROUNDS:
                state.base_round, state.base_prev = (int(x) for x in value.tolist())
            elif key.startswith(_PER_CLIENT):
                client, name = key[len(_PER_CLIENT) :].split("/", 1)
                state.per_client.setdefault(client, {})[name] = value
            else:
                raise ValueError(f"unknown server-state entry {key!r}")
        return state


def sent_view(state: ServerState, client: str, cfg: RunConfig, layout: Layout) -> Tensors:
    """What ``client`` is sent: :meth:`ServerState.sent_to`, cut to its rank when ranks differ."""
    sent = state.sent_to(client)
    if not heterogeneous(cfg):
        return sent
    return at_rank(sent, layout.slots, state.ranks.get(client, client_rank(cfg, client)))


def start_rank(cfg: RunConfig, client: str) -> int:
    """``ClientStart.rank`` for ``client``: its own rank when ranks differ, else 0."""
    return client_rank(cfg, client) if heterogeneous(cfg) else 0


def adapter_scale(cfg: RunConfig) -> float:
    """The adapter's scale ``s``: alpha/r (LoRA), alpha/sqrt(r) (rsLoRA), 1 (VeRA)."""
    if cfg.adapter.variant == "rslora":
        return cfg.adapter.alpha / math.sqrt(cfg.adapter.r)
    if cfg.adapter.variant == "lora":
        return cfg.adapter.alpha / cfg.adapter.r
    return 1.0


def upload_weight(cfg: RunConfig, num_examples: int) -> float:
    """A client's aggregation weight: its example count, or 1 with uniform weighting."""
    return float(num_examples) if cfg.federation.weighting == "examples" else 1.0


def expected_upload(
    algorithm: Algorithm, layout: Layout, cfg: RunConfig, round_idx: int, sent: Tensors
) -> Tensors:
    """What a client's upload must look like in round t: the sent tensors of the plan's slots."""
    sends = algorithm.schedule(algorithm.trains, round_idx, cfg).sends
    names = layout.shared if sends is None else layout.names(sends, layout.shared)
    return select(sent, names)


def screen_round(
    uploads: Mapping[str, Tensors], expected: Mapping[str, Tensors], max_norm: float | None
) -> tuple[list[str], dict[str, str]]:
    """Accepted client ids (in the order given) and rejection reasons.

    Each upload is judged against what that client was expected to send (:func:`screen_updates`).
    """
    accepted: list[str] = []
    rejected: dict[str, str] = {}
    for client, upload in uploads.items():
        ok, bad = screen_updates({client: upload}, expected[client], max_norm=max_norm)
        accepted += ok
        rejected.update(bad)
    return accepted, rejected


def server_update(
    algorithm: Algorithm,
    state: ServerState,
    uploads: Sequence[Upload],
    *,
    round_idx: int,
    cfg: RunConfig,
    layout: Layout,
    client_ids: Sequence[str],
    base_of: BaseReader,
    released: bool = False,
) -> ServerState:
    """Apply the algorithm's server rule to a round's accepted uploads; returns the next state.

    ``released``: the uploads already are the round's private release (secure aggregation,
    :func:`fedsa.privacy.secure.released_uploads`), so DP's wrapper is not applied again.

    Base deltas are added (in float64, cast back) to the current base values, so the state holds
    absolute values that any client, however many rounds it missed, installs exactly; the
    change's wire form is kept for counting what clients are sent
    (:meth:`ServerState.base_payload`).
    """
    ctx = ServerContext(
        round=round_idx,
        cfg=cfg,
        shared=state.shared,
        state=state.rule,
        slots=layout.slots,
        scale=adapter_scale(cfg),
        client_ids=client_ids,
        ranks={c: state.ranks.get(c, client_rank(cfg, c)) for c in client_ids},
        scales={c: client_scale(cfg, c) for c in client_ids},
        max_rank=max_rank(cfg),
    )
    private = cfg.privacy.private and not released
    rule = private_rule(algorithm.server_rule) if private else algorithm.server_rule
    out = rule(uploads, ctx)
    base = dict(state.base)
    sync = (state.base_sent, state.base_round, state.base_prev)
    if out.base_delta:
        fresh = [n for n in wire_targets(out.base_delta) if n not in base]
        base.update(base_of(fresh) if fresh else {})
        sent = clone(on_the_wire(out.base_delta, {n: v.dtype for n, v in base.items()}))
        for name, delta in expand(sent).items():  # exactly what each client will rebuild
            current = base[name]
            base[name] = (current.double() + delta).to(current.dtype)
        sync = (sent, round_idx, state.base_round)
    # copies: a rule may return the same tensor objects in several places (its state and what
    # it sends), and stored state must never alias what is sent or installed
    per_client = {**state.per_client, **{c: clone(t) for c, t in out.per_client.items()}}
    ranks = dict(state.ranks)
    if algorithm.prune is not None:  # a pruned client uploads zeros past the rank it keeps
        ranks.update({u.client: held_rank(u.tensors, layout.slots) for u in uploads})
    return ServerState(
        shared=dict(out.shared),
        per_client=per_client,
        base=base,
        rule=clone(out.state),
        base_sent=sync[0],
        base_round=sync[1],
        base_prev=sync[2],
        synced=dict(state.synced),
        ranks=ranks,
    )
