"""Table-driven test over every (algorithm, variant) pair on the tiny model: 3 clients, 2 rounds.

For each pair it checks what is uploaded, what is identical across clients, what differs, what
stays frozen, and that each client's private state is restored exactly from its own last round.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from fedsa.adapters.variants import VARIANTS
from fedsa.algorithms.aggregate import weighted_mean
from fedsa.algorithms.registry import ALGORITHMS
from fedsa.config.load import load_config
from fedsa.core.params import Tensors, equal, nbytes, numel, read_from, write_into
from fedsa.core.slots import A_LOCAL, B_LOCAL, HEAD, A, B
from fedsa.engine.evaluation import evaluate_client
from fedsa.engine.prepare import Federation, prepare
from fedsa.engine.server_step import sent_view
from fedsa.engine.simulation import ClientEvent, run_rounds
from fedsa.engine.store import ClientStore

EXPECTED_SLOTS = {
    "feddpa": {"shared": {A, B}, "private": {HEAD, A_LOCAL, B_LOCAL}, "frozen": set()},
    "fedsa-lora": {"shared": {A}, "private": {B, HEAD}, "frozen": set()},
    "fedit": {"shared": {A, B}, "private": {HEAD}, "frozen": set()},
    "ffa-lora": {"shared": {B}, "private": {HEAD}, "frozen": {A}},
    "local-only": {"shared": set(), "private": {A, B, HEAD}, "frozen": set()},
    "rolora": {"shared": {A, B}, "private": {HEAD}, "frozen": set()},
    "flora": {"shared": {A, B}, "private": {HEAD}, "frozen": set()},
    "fedex-lora": {"shared": {A, B}, "private": {HEAD}, "frozen": set()},
    "flexlora": {"shared": {A, B}, "private": {HEAD}, "frozen": set()},
    "fedsvd": {"shared": {A, B}, "private": {HEAD}, "frozen": set()},
    "fed-alora": {"shared": {B}, "private": {A, HEAD}, "frozen": set()},
    "fedrot-lora": {"shared": {A, B}, "private": {HEAD}, "frozen": set()},
    "hetlora": {"shared": {A, B}, "private": {HEAD}, "frozen": set()},
    "florist": {"shared": {A, B}, "private": {HEAD}, "frozen": set()},
}
SERVER_OWNED = {"fedsvd": {A}}
"""Shared slots that never train on a client: only the server's rule changes them."""
SENDS = {"rolora": {1: {B}, 2: {A}}, "fedsvd": {1: {B}, 2: {B}}}
"""Slots uploaded per round where that is not every shared slot."""
DEFAULT_RULE = {"fedsa-lora", "fedit", "ffa-lora", "feddpa", "local-only", "rolora", "fed-alora"}
"""Algorithms whose server takes the plain weighted mean (the others have their own tests)."""
FEDERATED = sorted(a for a in ALGORITHMS if not ALGORITHMS[a].pooled)
RANKS = [2, 4, 8]
"""``adapter.client_ranks`` of the heterogeneous-rank rows (client k: rank RANKS[k])."""
PAIRS = [
    (a, v, False)
    for a, v in itertools.product(FEDERATED, sorted(VARIANTS))
    if ALGORITHMS[a].supports(v)
] + [
    (a, v, True)
    for a, v in itertools.product(FEDERATED, ("lora", "rslora"))
    if ALGORITHMS[a].heterogeneous_ranks
]
MERGING = ("flora", "fedex-lora", "florist")
"""Algorithms whose server changes base weights."""


@dataclass
class Trace:
    fed: Federation
    events: list[ClientEvent]
    history: list[dict[str, Any]]
    shared: Tensors
    store: ClientStore
    base_before: Tensors
    base: Tensors
    """Base weights the server changed (absolute values): what every client installs."""
    sent: dict[str, Tensors]
    """What each client would be sent after the last round (cut to its rank)."""

    def by(self, round_idx: int, client: str) -> ClientEvent:
        return next(e for e in self.events if e.round == round_idx and e.client == client)


def traced_run(config: Path, *overrides: str) -> Trace:
    cfg = load_config(config, ["data.num_clients=3", "federation.rounds=2", *overrides])
    fed = prepare(cfg)
    base_names = [n for n, _ in fed.model.named_parameters() if n not in fed.layout.slots]
    base_before = read_from(fed.model, base_names)
    events: list[ClientEvent] = []
    state, store, history = run_rounds(fed, on_client=events.append)
    shared = state.shared
    sent = {c: sent_view(state, c, cfg, fed.layout) for c in fed.client_ids}
    return Trace(fed, events, history, shared, store, base_before, state.base, sent)


@pytest.fixture(
    scope="module", params=PAIRS, ids=[f"{a}-{v}" + ("-ranks" if h else "") for a, v, h in PAIRS]
)
def trace(request: pytest.FixtureRequest) -> tuple[str, str, Trace]:
    algo, variant, hetero = request.param
    lr = "optim.lr=0.05" if variant == "vera" else "optim.lr=0.005"
    ranks = [f"adapter.client_ranks={RANKS}", "adapter.alpha=12.0"] if hetero else []
    return (
        algo,
        variant,
        traced_run(
            Path(__file__).parents[1] / "configs" / "tiny.toml",
            f"algorithm={algo}",
            f"adapter.variant={variant}",
            lr,
            *ranks,
        ),
    )


def rank_of(t: Trace, client: str) -> int:
    """Client ``client``'s rank in the run (``adapter.r`` when ranks are uniform)."""
    ranks = t.fed.cfg.adapter.client_ranks
    return ranks[int(client) % len(ranks)] if ranks else t.fed.cfg.adapter.r


def test_layout_groups_match_algorithm(trace: tuple[str, str, Trace]) -> None:
    algo, _, t = trace
    layout = t.fed.layout
    for group in ("shared", "private", "frozen"):
        names = getattr(layout, group)
        assert {layout.slots[n] for n in names} == EXPECTED_SLOTS[algo][group], group
    assert set(layout.shared).isdisjoint(layout.private)
    assert set(layout.shared) | set(layout.private) | set(layout.frozen) == set(layout.slots)
    trainable = {n for n, p in t.fed.model.named_parameters() if p.requires_grad}
    owned = set(layout.names(frozenset(SERVER_OWNED.get(algo, set())), layout.shared))
    assert trainable == (set(layout.shared) | set(layout.private)) - owned


def test_uploads_hold_exactly_the_shared_tensors(trace: tuple[str, str, Trace]) -> None:
    algo, variant, t = trace
    assert len(t.events) == 6  # 3 clients x 2 rounds
    for e in t.events:
        sends = SENDS.get(algo, {}).get(e.round, EXPECTED_SLOTS[algo]["shared"])
        assert set(e.result.upload) == set(
            t.fed.layout.names(frozenset(sends), t.fed.layout.shared)
        )
        for name in e.result.upload:
            assert t.fed.layout.slots[name] in EXPECTED_SLOTS[algo]["shared"]
            assert "vera_A" not in name and "vera_B" not in name  # projections never sent
        r = rank_of(t, e.client)  # only the client's own rank travels, both ways
        for got in (e.result.upload, e.received_shared):
            for name, value in got.items():
                slot = t.fed.layout.slots[name]
                if ".lora_" in name and slot in (A, B):
                    assert value.shape[0 if slot == A else 1] == r, name
        if algo == "fedsa-lora":
            assert not any(t.fed.layout.slots[n] in (B, HEAD) for n in e.result.upload)
    if algo == "local-only":
        assert all(rec["bytes_up"] == 0 and rec["bytes_down"] == 0 for rec in t.history)


def test_byte_accounting_equals_tensor_nbytes(trace: tuple[str, str, Trace]) -> None:
    _, _, t = trace
    for rec in t.history:
        events = [e for e in t.events if e.round == rec["round"]]
        for e in events:
            assert rec["bytes_up_per_client"][e.client] == nbytes(e.result.upload)
            base = rec["bytes_down_per_client"][e.client] - nbytes(e.received_shared)
            # the base changes of merging methods are counted on top (tests/test_exact.py)
            assert base == 0 if not t.base else base >= 0
            # fp32 adapters: 4 bytes a number
            assert nbytes(e.result.upload) == 4 * numel(e.result.upload)
        assert rec["bytes_up"] == sum(nbytes(e.result.upload) for e in events)
    assert t.history[-1]["cum_bytes_up"] == sum(r["bytes_up"] for r in t.history)


def test_aggregate_is_broadcast_identically(trace: tuple[str, str, Trace]) -> None:
    """Every client receives the same tensors; with the plain rule, the weighted mean of the
    uploads (a shared tensor not uploaded this round keeps its value)."""
    algo, _, t = trace
    sizes = [float(len(p)) for p in t.fed.client_train]
    received = [t.by(2, c).received_shared for c in t.fed.client_ids]
    if t.fed.cfg.adapter.client_ranks:  # each its own rank: test_rank_rules.py, test_ranks.py
        return
    assert all(equal(r, received[0]) for r in received)
    if algo not in DEFAULT_RULE:
        return
    for rnd, after in ((1, received[0]), (2, t.shared)):
        ups = [t.by(rnd, c) for c in t.fed.client_ids]
        mean = weighted_mean([e.result.upload for e in ups], sizes) if t.fed.layout.shared else {}
        assert equal(after, {**ups[0].received_shared, **mean})


def test_private_state_is_restored_exactly_per_client(trace: tuple[str, str, Trace]) -> None:
    _, _, t = trace
    for c in t.fed.client_ids:
        assert equal(t.by(2, c).received_private, t.by(1, c).result.private)
        assert equal(t.store.get(c), t.by(2, c).result.private)
        assert equal(t.by(1, c).received_private, t.fed.init_private)  # common start


def test_private_tensors_differ_between_clients(trace: tuple[str, str, Trace]) -> None:
    algo, _, t = trace
    privs = [t.by(1, c).result.private for c in t.fed.client_ids]
    for name in t.fed.layout.private:
        values = [p[name] for p in privs]
        assert not torch.equal(values[0], values[1]) or not torch.equal(values[1], values[2]), name
    if algo in ("fedsa-lora", "local-only"):
        b_names = [n for n in t.fed.layout.private if t.fed.layout.slots[n] == B]
        assert b_names
        assert not all(torch.equal(privs[0][n], privs[1][n]) for n in b_names)


def test_trained_tensors_move_and_frozen_ones_do_not(trace: tuple[str, str, Trace]) -> None:
    algo, _, t = trace
    for e in t.events:
        moved = not equal(e.result.upload, e.received_shared) if e.result.upload else True
        assert moved
        assert not equal(e.result.private, e.received_private)
    frozen_now = read_from(t.fed.model, t.fed.layout.frozen)
    assert equal(frozen_now, t.fed.frozen)
    base_names = list(t.base_before)
    # the base model is untouched, except where the server merged into it (FLoRA, FedEx-LoRA)
    assert equal(read_from(t.fed.model, base_names), {**t.base_before, **t.base})
    assert bool(t.base) == (algo in MERGING)


def test_initial_state_is_common_and_reproducible(trace: tuple[str, str, Trace]) -> None:
    """A second process with the same seed rebuilds the same A, B, head and projections.

    This is what makes FFA-LoRA's frozen A and VeRA's projections identical on every client
    without ever sending them.
    """
    _, _, t = trace
    again = prepare(t.fed.cfg)
    assert equal(again.init_shared, t.fed.init_shared)
    assert equal(again.init_private, t.fed.init_private)
    assert equal(again.frozen, t.fed.frozen)
    bufs = {n: b for n, b in again.model.named_buffers() if "vera_" in n}
    for n, b in t.fed.model.named_buffers():
        if "vera_" in n:
            assert torch.equal(b, bufs[n])


def at_full_rank(t: Trace, client: str, fed: Federation, tensors: Tensors) -> Tensors:
    """``tensors`` of a rank-r_k client zero-padded to the model's rank, and the model given the
    client's scale by PEFT's own attribute (no fedsa code): the uniform case is untouched."""
    cfg = t.fed.cfg
    if not cfg.adapter.client_ranks:
        return dict(tensors)
    r, r_max = rank_of(t, client), max(cfg.adapter.client_ranks)
    root = math.sqrt if cfg.adapter.variant == "rslora" else float
    for module in fed.model.modules():
        if hasattr(module, "lora_A"):
            module.scaling["default"] = cfg.adapter.alpha / root(r)
    out = {}
    for name, value in tensors.items():
        if ".lora_A." in name and value.shape[0] == r:
            value = torch.cat([value, value.new_zeros(r_max - r, value.shape[1])])
        elif ".lora_B." in name and value.shape[1] == r:
            value = torch.cat([value, value.new_zeros(value.shape[0], r_max - r)], dim=1)
        out[name] = value
    return out


def _fresh_model_with(t: Trace, client: str, shared: Tensors) -> Federation:
    """A new process's model holding exactly (frozen, shared, client's private): no engine code."""
    fresh = prepare(t.fed.cfg)
    mine = at_full_rank(t, client, fresh, shared)
    write_into(fresh.model, {**t.base, **t.fed.frozen, **mine, **t.store.get(client)})
    return fresh


def test_evaluation_is_personalised(trace: tuple[str, str, Trace]) -> None:
    """Each client is evaluated with global shared + its own private tensors on its own shard.

    The reference is computed in a separate model that never held another client's tensors, so a
    private tensor leaking from the last-trained client into the evaluation would show.
    """
    _, _, t = trace
    final = t.history[-1]["eval"]["clients"]
    for k, c in enumerate(t.fed.client_ids):
        fresh = _fresh_model_with(t, c, t.sent[c])
        got = evaluate_client(fresh, k)
        assert got["accuracy"] == pytest.approx(final[c]["accuracy"])
        assert got["loss"] == pytest.approx(final[c]["loss"], rel=1e-5)


def test_local_training_starts_from_the_clients_own_state(trace: tuple[str, str, Trace]) -> None:
    """Replaying client 0's round 2 in a fresh model reproduces the engine's result bitwise.

    Client 0 trains first in round 2, right after client 2 trained last in round 1: if the engine
    let client 2's private tensors stay in the model, the replay (which starts clean) would differ.
    """
    _, _, t = trace
    from fedsa.algorithms.hooks import ClientStart
    from fedsa.engine.client import client_round, client_seed

    e = t.by(2, "0")
    fresh = prepare(t.fed.cfg)
    mine = at_full_rank(t, "0", fresh, e.received_shared)
    write_into(fresh.model, {**t.fed.frozen, **mine, **e.received_private})
    rank = rank_of(t, "0") if t.fed.cfg.adapter.client_ranks else 0
    start = ClientStart(
        fresh.frozen, e.received_shared, e.received_private, fresh.init_private,
        e.received_base, rank,
    )  # fmt: skip
    replay = client_round(
        fresh.model,
        fresh.layout,
        fresh.algorithm,
        start=start,
        data=fresh.train,
        indices=fresh.client_train[0],
        cfg=fresh.cfg,
        round_idx=2,
        seed=client_seed(fresh.cfg.seed, 2, 0),
        device=fresh.device,
    )
    assert equal(replay.upload, e.result.upload)
    assert equal(replay.private, e.result.private)


def test_ffa_lora_a_is_the_common_initial_a() -> None:
    t = traced_run(Path(__file__).parents[1] / "configs" / "tiny.toml", "algorithm=ffa-lora")
    a_names = [n for n, s in t.fed.layout.slots.items() if s == A]
    assert set(a_names) == set(t.fed.layout.frozen)
    assert all(torch.count_nonzero(t.fed.frozen[n]) > 0 for n in a_names)  # random, not zero
    assert equal(read_from(t.fed.model, a_names), t.fed.frozen)


@pytest.mark.parametrize("variant", ["lora", "rslora"])
def test_scale(variant: str) -> None:
    cfg = load_config(
        Path(__file__).parents[1] / "configs" / "tiny.toml",
        [f"adapter.variant={variant}", "adapter.r=4", "adapter.alpha=8"],
    )
    fed = prepare(cfg)
    scales = [m.scaling["default"] for _, m in fed.model.named_modules() if hasattr(m, "lora_A")]
    assert len(scales) == 4  # 2 layers x (query, value)
    expected = 8 / math.sqrt(4) if variant == "rslora" else 8 / 4
    assert all(s == pytest.approx(expected) for s in scales)


def test_share_head_moves_head_into_uploads() -> None:
    t = traced_run(
        Path(__file__).parents[1] / "configs" / "tiny.toml",
        "algorithm=fedit",
        "federation.share_head=true",
    )
    heads = {n for n, s in t.fed.layout.slots.items() if s == HEAD}
    assert heads and heads <= set(t.fed.layout.shared)
    assert heads <= set(t.events[0].result.upload)


def test_partial_participation_samples_reproducibly() -> None:
    cfg_args = ("data.num_clients=5", "federation.clients_per_round=2", "federation.rounds=3")
    tiny = Path(__file__).parents[1] / "configs" / "tiny.toml"
    a = traced_run(tiny, *cfg_args)
    b = traced_run(tiny, *cfg_args)
    parts = [rec["participants"] for rec in a.history]
    assert all(len(p) == 2 for p in parts)
    assert parts == [rec["participants"] for rec in b.history]
    assert equal(a.shared, b.shared)
    for c in a.fed.client_ids:
        assert equal(a.store.get(c), b.store.get(c))
    # a client that never took part still holds the common initial private state
    seen = {c for p in parts for c in p}
    for c in set(a.fed.client_ids) - seen:
        assert equal(a.store.get(c), a.fed.init_private)
