"""Golden values for the server rules over heterogeneous ranks, worked out by hand or in float64.

FedSA-LoRA's per-row mean, HetLoRA's norm weights, FLoRA's scale-corrected stacking, FLoRIST's
kept rank, FlexLoRA's per-client truncation. Scales differ from 1 and from each other, weights
are unequal and layers have d_in != d_out, so a dropped or shared scale, an unweighted mean or a
mean that counts absent rows as zeros each fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fedsa.algorithms.heterogeneous import florist_rule, hetlora_rule, kept_rank, self_prune
from fedsa.algorithms.hooks import ServerContext, Upload
from fedsa.algorithms.lowrank import expand
from fedsa.algorithms.merging import flora_rule
from fedsa.algorithms.refactoring import flexlora_rule
from fedsa.algorithms.rules import row_mean_rule, weighted_mean_rule
from fedsa.config.load import load_config
from fedsa.config.schema import RunConfig
from fedsa.core.slots import A, B

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
LA, LB, W = "l.lora_A.default.weight", "l.lora_B.default.weight", "l.base_layer.weight"
SLOTS = {LA: A, LB: B}


def cfg_of(algorithm: str, alpha: float, ranks: list[int], *extra: str) -> RunConfig:
    return load_config(
        TINY,
        [
            f"algorithm={algorithm}",
            f"adapter.alpha={alpha}",
            f"adapter.client_ranks={ranks}",
            *extra,
        ],
    )


def ctx_of(cfg: RunConfig, shared: dict[str, torch.Tensor], clients: list[str]) -> ServerContext:
    ranks = list(cfg.adapter.client_ranks)
    r = {c: ranks[int(c) % len(ranks)] for c in clients}
    alpha = cfg.adapter.alpha
    root = (lambda x: x**0.5) if cfg.adapter.variant == "rslora" else (lambda x: float(x))
    return ServerContext(
        round=1, cfg=cfg, shared=shared, state={}, slots=SLOTS, scale=alpha / root(max(ranks)),
        client_ids=clients, ranks=r, scales={c: alpha / root(k) for c, k in r.items()},
        max_rank=max(ranks),
    )  # fmt: skip


def up(client: str, weight: float, **tensors: torch.Tensor) -> Upload:
    named = {LA if k == "a" else LB: v for k, v in tensors.items()}
    return Upload(client, named, weight, {})


def test_fedsa_row_mean_averages_each_row_over_its_holders() -> None:
    """Row 0: (1*1 + 3*2) / 4; row 1: client 1's alone (4); row 2: nobody's, kept (9)."""
    cfg = cfg_of("fedsa-lora", 8.0, [1, 2, 3])
    glob = torch.full((3, 2), 9.0)
    ctx = ctx_of(cfg, {LA: glob}, ["0", "1", "2"])
    ups = [
        up("0", 1.0, a=torch.tensor([[1.0, 1.0]])),
        up("1", 3.0, a=torch.tensor([[2.0, 2.0], [4.0, 4.0]])),
    ]
    out = row_mean_rule(ups, ctx).shared[LA]
    assert torch.equal(out, torch.tensor([[1.75, 1.75], [4.0, 4.0], [9.0, 9.0]]))


def test_fedsa_row_mean_is_the_weighted_mean_bit_for_bit_at_equal_ranks() -> None:
    cfg = cfg_of("fedsa-lora", 8.0, [3])
    gen = torch.Generator().manual_seed(0)
    ctx = ctx_of(cfg, {LA: torch.zeros(3, 5)}, ["0", "1"])
    ups = [up(c, w, a=torch.randn(3, 5, generator=gen)) for c, w in (("0", 7.0), ("1", 2.0))]
    assert torch.equal(row_mean_rule(ups, ctx).shared[LA], weighted_mean_rule(ups, ctx).shared[LA])


def test_hetlora_norm_weights_and_prefix_truncation() -> None:
    """||s_0 B_0 A_0|| = 2 (s_0 = 2), ||s_1 B_1 A_1|| = 5 (s_1 = 1): p = (2/7, 5/7)."""
    cfg = cfg_of("hetlora", 2.0, [1, 2])  # s(1) = 2, s(2) = 1
    ctx = ctx_of(cfg, {LA: torch.zeros(2, 2), LB: torch.zeros(2, 2)}, ["0", "1"])
    ups = [
        up("0", 100.0, a=torch.tensor([[1.0, 0.0]]), b=torch.tensor([[1.0], [0.0]])),
        up("1", 1.0, a=torch.eye(2), b=torch.tensor([[3.0, 0.0], [0.0, 4.0]])),
    ]  # example counts play no part in HetLoRA's weights
    out = hetlora_rule(ups, ctx)
    a_g = torch.tensor([[1.0, 0.0], [0.0, 5 / 7]])
    b_eff = torch.tensor([[19 / 7, 0.0], [0.0, 20 / 7]])  # 2/7 [[2,0],[0,0]] + 5/7 diag(3, 4)
    assert torch.allclose(out.shared[LA], a_g, atol=1e-7)
    assert torch.allclose(out.shared[LB], b_eff / 1.0, atol=1e-7)  # the rank-2 client, s = 1
    assert torch.allclose(out.per_client["0"][LB], b_eff / 2.0, atol=1e-7)  # s_0 = 2
    # client 0's update s_0 B[:, :1] A[:1] is the global effective factors cut to rank 1
    update_0 = 2.0 * out.per_client["0"][LB][:, :1] @ out.shared[LA][:1]
    assert torch.allclose(update_0, b_eff[:, :1] @ a_g[:1], atol=1e-6)


def random_uploads(ranks: list[int], m: int = 6, n: int = 5) -> list[Upload]:
    gen = torch.Generator().manual_seed(1)
    return [
        up(
            str(k),
            float(3 + 5 * k),
            a=torch.randn(r, n, generator=gen),
            b=torch.randn(m, r, generator=gen),
        )
        for k, r in enumerate(ranks)
    ]


def reference_sum(ups: list[Upload], ctx: ServerContext) -> torch.Tensor:
    """``sum_k p_k s_k B_k A_k`` in float64, straight from what the server received."""
    total = sum(u.weight for u in ups)
    return sum(
        (u.weight / total)
        * ctx.scales[u.client]
        * (u.tensors[LB].double() @ u.tensors[LA].double())
        for u in ups
    )  # type: ignore[return-value]


@pytest.mark.parametrize("variant", ["lora", "rslora"])
def test_flora_stacks_scale_corrected_blocks(variant: str) -> None:
    cfg = cfg_of("flora", 12.0, [2, 4], f"adapter.variant={variant}")
    ups = random_uploads([2, 4])
    ctx = ctx_of(cfg, {LA: torch.zeros(4, 5), LB: torch.zeros(6, 4)}, ["0", "1"])
    merged = expand(flora_rule(ups, ctx).base_delta)[W]
    ref = reference_sum(ups, ctx)
    assert torch.allclose(merged, ref, atol=1e-5, rtol=0)
    # the official zero-padding baseline's slip: one scale (that of max(r)) for every block
    total = sum(u.weight for u in ups)
    one_scale = sum(
        (u.weight / total) * ctx.scale * (u.tensors[LB].double() @ u.tensors[LA].double())
        for u in ups
    )
    assert not torch.allclose(one_scale, ref, atol=1e-2)  # type: ignore[arg-type]


@pytest.mark.parametrize(("tau", "kept"), [(0.5, 1), (0.9, 2), (0.92, 2), (0.95, 3), (1.0, 3)])
def test_florist_keeps_the_fewest_components_reaching_tau(tau: float, kept: int) -> None:
    """Energies 9, 4, 1 of 14: cumulative 0.643, 0.929, 1."""
    assert kept_rank(torch.tensor([3.0, 2.0, 1.0]), tau) == kept


def test_florist_merges_the_truncated_aggregate() -> None:
    cfg = cfg_of("florist", 3.0, [3], "florist.tau=0.9")  # s = 1
    ctx = ctx_of(cfg, {LA: torch.zeros(3, 4), LB: torch.zeros(3, 3)}, ["0"])
    a = torch.eye(3, 4)
    ups = [up("0", 1.0, a=a, b=torch.diag(torch.tensor([3.0, 2.0, 1.0])))]
    merged = expand(florist_rule(ups, ctx).base_delta)[W]
    expected = torch.diag(torch.tensor([3.0, 2.0, 0.0], dtype=torch.float64)) @ a.double()
    assert torch.allclose(merged, expected, atol=1e-6)


@pytest.mark.parametrize("variant", ["lora", "rslora"])
def test_flexlora_gives_each_client_the_top_rk_svd(variant: str) -> None:
    cfg = cfg_of("flexlora", 12.0, [2, 4], f"adapter.variant={variant}")
    ups = random_uploads([2, 4])
    ctx = ctx_of(cfg, {LA: torch.zeros(4, 5), LB: torch.zeros(6, 4)}, ["0", "1"])
    out = flexlora_rule(ups, ctx)
    u, s, vh = torch.linalg.svd(reference_sum(ups, ctx))
    for client, r in (("0", 2), ("1", 4)):
        got = {**out.shared, **out.per_client.get(client, {})}
        product = ctx.scales[client] * got[LB][:, :r].double() @ got[LA][:r].double()
        top = u[:, :r] @ torch.diag(s[:r]) @ vh[:r]
        assert torch.allclose(product, top, atol=1e-5, rtol=0), client
        assert float(got[LB][:, r:].abs().sum()) == 0.0  # nothing past its rank


def test_hetlora_self_pruning_keeps_ceil_gamma_r_when_the_tail_is_small() -> None:
    """Rank 4, gamma 0.5: the tail is components 2 and 3; its share of ||s B A|| decides."""
    cfg = cfg_of("hetlora", 8.0, [4], "hetlora.prune_gamma=0.5", "hetlora.prune_threshold=0.1")
    a = torch.eye(4, 5)
    b = torch.zeros(3, 4)
    b[0, 0], b[1, 1], b[2, 2] = 1.0, 1.0, 0.05  # tail share: 0.05 / sqrt(2 + 0.0025) = 0.035
    assert self_prune({LA: a, LB: b}, SLOTS, 2.0, cfg) == 2
    b[2, 2] = 0.5  # share 0.5 / sqrt(2.25) = 0.33 > 0.1
    assert self_prune({LA: a, LB: b}, SLOTS, 2.0, cfg) == 4
    off = cfg_of("hetlora", 8.0, [4])
    assert self_prune({LA: a, LB: torch.zeros(3, 4)}, SLOTS, 2.0, off) == 4  # gamma 0: never


def test_hetlora_pruned_ranks_shrink_what_travels(tmp_path: Path) -> None:
    """With a threshold no tail can pass, every client halves its rank each round, down to 1."""
    from fedsa.engine.runner import run

    cfg = cfg_of("hetlora", 12.0, [2, 4, 8], "hetlora.prune_gamma=0.5",
                 "hetlora.prune_threshold=0.999", "federation.rounds=4")  # fmt: skip
    run(cfg, tmp_path / "run")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ups = [json.loads(line)["bytes_up_per_client"] for line in lines]
    per_rank = ups[0]["0"] // 2  # bytes of one rank component (client 0 starts at rank 2)
    ranks = [[u[c] // per_rank for c in ("0", "1", "2")] for u in ups]
    assert ranks == [[2, 4, 8], [1, 2, 4], [1, 1, 2], [1, 1, 1]]
