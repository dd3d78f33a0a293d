"""Exactness of the exact methods against an independent float64 reference.

For FLoRA, FedEx-LoRA, FlexLoRA (at full rank), RoLoRA and FedSVD, after each of 2 rounds the
new global effective weight of every adapted layer, ``W + s B A`` exactly as the next round's
clients receive it (base as changed by the server, adapter as sent), must equal the weighted
mean ``sum_k p_k (W_k + s B_k A_k)`` of the clients' effective weights after local training,
computed here in float64 from what the server accepted (a factor not uploaded this round is the
one the client received, frozen). The parameters are chosen so that the known bugs fail: alpha/r
!= 1, unequal example counts, layers with d_in != d_out and square ones; the test also checks
that a dropped scale, an unweighted mean and a transposed residual would each miss the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from fedsa.algorithms.lowrank import LoraLayer, lora_layers
from fedsa.config.load import load_config
from fedsa.core.params import Tensors, read_from
from fedsa.engine.prepare import Federation, prepare
from fedsa.engine.server_step import adapter_scale
from fedsa.engine.simulation import ClientEvent, run_rounds

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
TOL = 1e-5
SQUARE = 'adapter.target_modules=["query", "value"]'  # 32 x 32 in the tiny BERT
RECTANGULAR = 'adapter.target_modules=["dense"]'  # 64 x 32, 32 x 64 (and 32 x 32) layers
CASES = [
    (algo, variant, layers, rank)
    for algo in ("flora", "fedex-lora", "flexlora", "rolora", "fedsvd")
    for variant in ("lora", "rslora")
    for layers in (SQUARE, RECTANGULAR)
    # FlexLoRA is exact at full rank: r >= min(d_out, d_in) = 32 keeps every component
    for rank in ((32,) if algo == "flexlora" else (4,))
]


def rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x - ref).norm() / ref.norm())


@dataclass
class Case:
    """One traced 2-round run of an exact method."""

    fed: Federation
    layers: list[LoraLayer]
    w0: Tensors
    """Initial base weights of the adapted layers."""
    events: list[ClientEvent]
    final: tuple[Tensors, Tensors]
    """What a client receives after the last round: shared tensors, changed base weights."""
    scale: float


def run_case(algo: str, variant: str, layers: str, rank: int) -> Case:
    cfg = load_config(
        TINY,
        [
            f"algorithm={algo}",
            f"adapter.variant={variant}",
            layers,
            f"adapter.r={rank}",
            "adapter.alpha=12",  # s = 3 (lora r=4), 6 (rslora r=4), 0.375 / 2.12 (r=32)
            "data.num_clients=3",
            "federation.rounds=2",
            "optim.lr=0.02",
        ],
    )
    fed = prepare(cfg)
    found = lora_layers(fed.layout.slots)
    w0 = read_from(fed.model, [layer.base for layer in found])
    events: list[ClientEvent] = []
    state, _, _ = run_rounds(fed, on_client=events.append)
    return Case(fed, found, w0, events, (state.sent_to("0"), state.base), adapter_scale(cfg))


def effective(
    shared: Tensors, base: Tensors, w0: Tensors, layer: LoraLayer, s: float
) -> torch.Tensor:
    """``W + s B A`` in float64: the base as changed so far (else ``W0``), the adapter given."""
    w = base.get(layer.base, w0[layer.base]).double()
    return w + s * shared[layer.b].double() @ shared[layer.a].double()


def reference(
    events: list[ClientEvent], w0: Tensors, layer: LoraLayer, s: float, weights: list[float]
) -> torch.Tensor:
    """``sum_k p_k (W_k + s B_k A_k)``: each client's trained factors, or the received one."""
    p = torch.tensor(weights, dtype=torch.float64) / sum(weights)
    total = torch.zeros_like(w0[layer.base], dtype=torch.float64)
    for pk, e in zip(p, events, strict=True):
        trained = {**e.received_shared, **e.result.upload}
        total += pk * effective(trained, e.received_base, w0, layer, s)
    return total


@pytest.fixture(
    scope="module",
    params=CASES,
    ids=[f"{c[0]}-{c[1]}-{'square' if c[2] == SQUARE else 'rect'}" for c in CASES],
)
def case(request: pytest.FixtureRequest) -> Case:
    return run_case(*request.param)


def test_new_global_effective_weight_is_the_weighted_mean(case: Case) -> None:
    events, w0, s = case.events, case.w0, case.scale
    assert s != 1.0
    sizes = [float(len(p)) for p in case.fed.client_train]
    assert len(set(sizes)) == len(sizes), "example counts must differ"
    for rnd in (1, 2):
        mine = [e for e in events if e.round == rnd]
        assert [e.client for e in mine] == ["0", "1", "2"]
        nxt = [e for e in events if e.round == rnd + 1]
        after = (nxt[0].received_shared, nxt[0].received_base) if nxt else case.final
        for layer in case.layers:
            ref = reference(mine, w0, layer, s, sizes)
            got = effective(after[0], after[1], w0, layer, s)
            assert rel(got, ref) < TOL, (rnd, layer.base, rel(got, ref))
            # the test has the power to see the known bugs
            uniform = reference(mine, w0, layer, s, [1.0] * len(sizes))
            assert rel(uniform, ref) > 20 * TOL, "unweighted mean indistinguishable"
            start = effective(mine[0].received_shared, mine[0].received_base, w0, layer, s)
            unscaled = start + (ref - start) / s  # the round's update with the scale dropped
            assert rel(unscaled, ref) > 20 * TOL, "dropped scale indistinguishable"


def test_a_transposed_residual_would_fail() -> None:
    """FedEx-LoRA on square layers: the residual differs from its transpose far beyond the
    tolerance, so adding R^T (the official code's orientation) would fail the exactness test;
    on the d_out != d_in layers R^T cannot even be added."""
    out = run_case("fedex-lora", "lora", SQUARE, 4)
    w0, s, base = out.w0, out.scale, out.final[1]
    for layer in out.layers:
        residual = (base[layer.base].double() - w0[layer.base].double()) / s  # rounds 1 + 2
        assert residual.shape[0] == residual.shape[1]
        ref = effective(*out.final, w0, layer, s)
        wrong = ref - s * residual + s * residual.T
        assert rel(wrong, ref) > 100 * TOL
    rect = run_case("fedex-lora", "lora", RECTANGULAR, 4)
    shapes = {tuple(v.shape) for v in rect.final[1].values()}
    assert {(64, 32), (32, 64)} <= shapes


def test_merging_methods_refuse_layers_stored_transposed() -> None:
    """GPT-2's Conv1D stores W0 as (d_in, d_out): adding ``B @ A`` there would be the transposed
    merge, which a square layer would not reveal; FLoRA and FedEx-LoRA refuse it, FedIT need not."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from fedsa.algorithms.registry import ALGORITHMS
    from fedsa.core.errors import ConfigError
    from fedsa.engine.prepare import check_orientation

    gpt2 = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64))
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=2, target_modules=["c_attn"], fan_in_fan_out=True
    )
    model = get_peft_model(gpt2, lora)
    for algo in ("flora", "fedex-lora"):
        with pytest.raises(ConfigError, match="stores its weight transposed"):
            check_orientation(model, ALGORITHMS[algo])
    check_orientation(model, ALGORITHMS["fedit"])
    check_orientation(
        prepare(load_config(TINY, ["algorithm=fedex-lora"])).model, ALGORITHMS["flora"]
    )
