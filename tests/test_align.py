"""Rotational alignment (FedRot-LoRA): the client's product is unchanged, the averaging error
drops, and it is refused where it does not apply."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedsa.algorithms.align import aligned_pair, rotate_to_received
from fedsa.algorithms.lowrank import lora_layers
from fedsa.config.load import load_config
from fedsa.core.errors import ConfigError
from fedsa.core.params import read_from, write_into
from fedsa.engine.prepare import prepare
from fedsa.engine.simulation import ClientEvent, run_rounds

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"


def _products(tensors: dict[str, torch.Tensor], layers: list) -> list[torch.Tensor]:  # type: ignore[type-arg]
    return [tensors[la.b].double() @ tensors[la.a].double() for la in layers]


@pytest.mark.parametrize("algorithm", ["fedit", "fedsa-lora", "fed-alora"])
@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_rotation_keeps_the_clients_product(algorithm: str, lam: float) -> None:
    fed = prepare(load_config(TINY, [f"algorithm={algorithm}"]))
    layers = lora_layers(fed.layout.slots)
    gen = torch.Generator().manual_seed(3)
    names = [n for la in layers for n in (la.a, la.b)]
    trained = {
        n: torch.randn(v.shape, generator=gen) for n, v in read_from(fed.model, names).items()
    }
    global_ = {n: torch.randn(v.shape, generator=gen) for n, v in trained.items()}
    write_into(fed.model, trained)
    rotate_to_received(fed.model, fed.layout, global_, lam)
    after = read_from(fed.model, names)
    for before_p, after_p in zip(_products(trained, layers), _products(after, layers), strict=True):
        assert float((after_p - before_p).norm() / before_p.norm()) < 1e-6
    assert not any(torch.allclose(after[n], trained[n]) for n in names)  # it did rotate


def _averaging_error(pairs: list[tuple[torch.Tensor, torch.Tensor]], p: torch.Tensor) -> float:
    """``sum_k p_k ||B_k A_k - B_bar A_bar||_F``."""
    a_bar = sum(pk * a for pk, (a, _) in zip(p, pairs, strict=True))
    b_bar = sum(pk * b for pk, (_, b) in zip(p, pairs, strict=True))
    return float(
        sum(pk * (b @ a - b_bar @ a_bar).norm() for pk, (a, b) in zip(p, pairs, strict=True))
    )  # type: ignore[operator]


def test_alignment_reduces_the_averaging_error_on_a_hand_built_case() -> None:
    """Three clients hold nearly the same product in differently rotated coordinates: FedIT's
    factor averages then mix incompatible coordinates; aligned to the global A they agree."""
    gen = torch.Generator().manual_seed(0)
    r, m, n = 4, 12, 10
    a_glob = torch.randn(r, n, generator=gen, dtype=torch.float64)
    b_true = torch.randn(m, r, generator=gen, dtype=torch.float64)
    pairs = []
    for _ in range(3):
        q, _ = torch.linalg.qr(torch.randn(r, r, generator=gen, dtype=torch.float64))
        noise = 0.05 * torch.randn(r, n, generator=gen, dtype=torch.float64)
        pairs.append((q.T @ a_glob + noise, b_true @ q))  # (A_k, B_k): product ~ B A
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    before = _averaging_error(pairs, p)
    rotated = [aligned_pair(a, b, a_ref=a_glob) for a, b in pairs]
    after = _averaging_error(rotated, p)
    for (a, b), (ra, rb) in zip(pairs, rotated, strict=True):
        torch.testing.assert_close(rb @ ra, b @ a, rtol=1e-10, atol=1e-10)
    assert after < 0.2 * before, (before, after)
    soft = _averaging_error([aligned_pair(a, b, a_ref=a_glob, lam=0.5) for a, b in pairs], p)
    assert after <= soft < before


def test_fedsa_lora_rotates_its_local_b_with_the_uploaded_a() -> None:
    """Same seed with and without alignment: identical training, so each client's product
    ``B_k A_k`` (uploaded A, kept B) is the same, while the uploaded A moved towards A_bar."""

    def first_round(align: str) -> list[ClientEvent]:
        fed = prepare(load_config(TINY, ["federation.rounds=1", f"federation.align={align}"]))
        events: list[ClientEvent] = []
        run_rounds(fed, on_client=events.append)
        return events

    plain, rotated = first_round("none"), first_round("rotation")
    fed = prepare(load_config(TINY, []))
    layers = lora_layers(fed.layout.slots)
    for e0, e1 in zip(plain, rotated, strict=True):
        t0 = {**e0.result.upload, **e0.result.private}
        t1 = {**e1.result.upload, **e1.result.private}
        for p0, p1 in zip(_products(t0, layers), _products(t1, layers), strict=True):
            assert float((p1 - p0).norm() / p0.norm()) < 1e-6
        for la in layers:
            ref = e0.received_shared[la.a]
            assert (t1[la.a] - ref).norm() <= (t0[la.a] - ref).norm() + 1e-7


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["algorithm=ffa-lora", "federation.align=rotation"], "does not apply to ffa-lora"),
        (["algorithm=rolora", "federation.align=rotation"], "does not apply to rolora"),
        (["adapter.variant=vera", "federation.align=rotation"], "VeRA's diagonal"),
        (["algorithm=fedrot-lora", "adapter.variant=vera"], "does not support"),
        (["federation.align=procrustes"], "federation.align"),
        (["federation.align_lambda=0"], "federation.align_lambda"),
    ],
)
def test_alignment_is_refused_where_it_does_not_apply(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(TINY, overrides)
