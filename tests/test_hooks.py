"""The algorithm hooks, each exercised by a small test-only algorithm on the tiny model.

- a round schedule that trains and sends one factor a round (RoLoRA's shape);
- a server rule that sends tensors per client and keeps server state across rounds;
- a server rule that merges the clients' product into the base weights and restarts the adapter
  (FLoRA's shape), checked against an independent float64 reference of the effective weight;
- server state (per-client tensors, base weights, the rule's state) through checkpoint and resume.

Every test algorithm is registered only for the test (``monkeypatch`` on the registry).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch

from fedsa.algorithms.aggregate import weighted_mean
from fedsa.algorithms.basic import FEDIT
from fedsa.algorithms.hooks import Phase, RoundPlan, ServerContext, ServerOutput, Upload
from fedsa.algorithms.install import reset_private
from fedsa.algorithms.registry import ALGORITHMS
from fedsa.algorithms.rules import weighted_mean_rule
from fedsa.config.load import load_config
from fedsa.config.schema import RunConfig
from fedsa.core.params import Tensors, nbytes, read_from
from fedsa.core.slots import HEAD, A, B, Slot
from fedsa.engine.checkpoint import Checkpointer
from fedsa.engine.prepare import prepare
from fedsa.engine.runner import run
from fedsa.engine.simulation import ClientEvent, run_rounds

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"


def alternating(trains: frozenset[Slot], round_idx: int, cfg: RunConfig) -> RoundPlan:
    """B in odd rounds, A in even ones (with the head every round)."""
    factor = B if round_idx % 2 == 1 else A
    return RoundPlan(
        phases=(Phase(frozenset({factor, HEAD}), cfg.federation.local_steps),),
        sends=frozenset({factor}),
    )


def halve_own(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
    """The mean for everyone, but each uploader gets half its own upload back next time."""
    out = weighted_mean_rule(uploads, ctx)
    count = ctx.state.get("rounds", torch.zeros((), dtype=torch.int64)) + 1
    per_client = {u.client: {k: v * 0.5 for k, v in u.tensors.items()} for u in uploads}
    return ServerOutput(shared=out.shared, per_client=per_client, state={"rounds": count})


def base_name(adapter_name: str) -> str:
    """``...query.lora_A.default.weight`` -> ``...query.base_layer.weight``."""
    return adapter_name.split(".lora_")[0] + ".base_layer.weight"


def merge_product(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
    """Merge ``s * sum_k p_k B_k A_k`` into each adapted base weight; restart from the initial
    adapter kept in the rule's state."""
    initial = ctx.state or dict(ctx.shared)  # round 1: what was sent is the initial adapter
    total = sum(u.weight for u in uploads)
    delta: Tensors = {}
    for name in ctx.shared:
        if ".lora_A." not in name:
            continue
        b_name = name.replace(".lora_A.", ".lora_B.")
        prod = sum(
            (u.weight / total) * (u.tensors[b_name].double() @ u.tensors[name].double())
            for u in uploads
        )
        assert isinstance(prod, torch.Tensor)
        delta[base_name(name)] = ctx.scale * prod
    return ServerOutput(shared=dict(initial), base_delta=delta, state=dict(initial))


ALTERNATING = dataclasses.replace(FEDIT, name="test-alternating", schedule=alternating)
PER_CLIENT = dataclasses.replace(FEDIT, name="test-per-client", server_rule=halve_own)
MERGE = dataclasses.replace(
    FEDIT, name="test-merge", server_rule=merge_product, install=reset_private
)


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for algo in (ALTERNATING, PER_CLIENT, MERGE):
        monkeypatch.setitem(ALGORITHMS, algo.name, algo)
    yield


def _events(*overrides: str) -> tuple[object, list[ClientEvent], object]:
    fed = prepare(load_config(TINY, list(overrides)))
    events: list[ClientEvent] = []
    state, _, history = run_rounds(fed, on_client=events.append)
    return fed, events, (state, history)


def test_a_schedule_trains_and_sends_one_factor_a_round() -> None:
    fed, events, (state, history) = _events("algorithm=test-alternating", "federation.rounds=2")
    layout = fed.layout  # type: ignore[attr-defined]
    a_names = {n for n in layout.shared if layout.slots[n] == A}
    b_names = {n for n in layout.shared if layout.slots[n] == B}
    for e in events:
        sent = b_names if e.round == 1 else a_names
        assert set(e.result.upload) == sent
        assert history[e.round - 1]["bytes_up_per_client"][e.client] == nbytes(e.result.upload)
    init = fed.init_shared  # type: ignore[attr-defined]
    round2 = [e for e in events if e.round == 2]
    for e in round2:  # A was not trained in round 1: still the initial A; B moved
        assert all(torch.equal(e.received_shared[n], init[n]) for n in a_names)
        assert any(not torch.equal(e.received_shared[n], init[n]) for n in b_names)
    assert all(torch.equal(state.shared[n], round2[0].received_shared[n]) for n in b_names)


def test_a_rule_sends_tensors_per_client_and_keeps_state() -> None:
    fed, events, (state, _) = _events(
        "algorithm=test-per-client", "federation.rounds=2", "federation.clients_per_round=2"
    )
    r1 = {e.client: e for e in events if e.round == 1}
    sizes = {c: len(p) for c, p in zip(fed.client_ids, fed.client_train, strict=True)}  # type: ignore[attr-defined]
    mean1 = weighted_mean([e.result.upload for e in r1.values()], [sizes[c] for c in r1])
    round2 = [e for e in events if e.round == 2]
    assert any(e.client not in r1 for e in round2), "the seed must leave someone out of round 1"
    for e in round2:
        if e.client in r1:  # half of what it uploaded in round 1
            own = r1[e.client].result.upload
            assert all(torch.equal(e.received_shared[k], own[k] * 0.5) for k in own)
        else:  # never uploaded: the common mean of round 1
            assert all(torch.equal(e.received_shared[k], v) for k, v in mean1.items())
    assert int(state.rule["rounds"]) == 2


def test_merge_rule_puts_the_exact_weighted_product_into_every_clients_base() -> None:
    fed, events, (state, _) = _events("algorithm=test-merge", "federation.rounds=1")
    cfg = fed.cfg  # type: ignore[attr-defined]
    s = cfg.adapter.alpha / cfg.adapter.r
    assert s != 1.0
    sizes = {c: len(p) for c, p in zip(fed.client_ids, fed.client_train, strict=True)}  # type: ignore[attr-defined]
    assert len(set(sizes.values())) > 1  # unequal example counts: an unweighted mean would fail
    a_names = [n for n in fed.layout.shared if ".lora_A." in n]  # type: ignore[attr-defined]
    assert a_names
    for a_name in a_names:  # independent float64 reference from what the server received
        b_name = a_name.replace(".lora_A.", ".lora_B.")
        total = sum(sizes[e.client] for e in events)
        ref = sum(
            (sizes[e.client] / total)
            * (e.result.upload[b_name].double() @ e.result.upload[a_name].double())
            for e in events
        )
        base0 = read_from(prepare(fed.cfg).model, [base_name(a_name)])[base_name(a_name)]  # type: ignore[attr-defined]
        got = state.base[base_name(a_name)].double() - base0.double()
        expected = s * ref
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7)
        assert torch.linalg.norm(expected) > 0
    # a restarted adapter (B = 0): the effective weight is the new base alone, for every client
    assert all(torch.equal(state.shared[k], v) for k, v in fed.init_shared.items())  # type: ignore[attr-defined]


def test_server_state_survives_checkpoint_and_resume_bitwise(tmp_path: Path) -> None:
    over = ["algorithm=test-merge", "federation.rounds=4", "checkpoint.keep=4"]
    cfg = load_config(TINY, over)
    run(cfg, tmp_path / "ref")

    def stop_after_2(record: dict[str, object]) -> None:
        if record["round"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut", on_round=stop_after_2)
    ckpt = Checkpointer(tmp_path / "cut", cfg).latest()
    assert ckpt is not None and ckpt.round == 2
    assert any(k.startswith("base/") for k in ckpt.server)
    assert any(k.startswith("rule/") for k in ckpt.server)
    run(cfg, tmp_path / "cut", resume=True)
    for name in ("global.safetensors", "clients/0.safetensors", "clients/2.safetensors"):
        assert (tmp_path / "ref" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes()
    ref = Checkpointer(tmp_path / "ref", cfg).read(4)
    cut = Checkpointer(tmp_path / "cut", cfg).read(4)
    assert ref.server.keys() == cut.server.keys()
    assert all(torch.equal(ref.server[k], cut.server[k]) for k in ref.server)
