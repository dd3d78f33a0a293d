"""RoLoRA's schedule, FedSVD's re-factorisation, the bytes of base changes, and kill-and-resume
for every exact or aligned method (their exactness is in ``tests/test_exact.py``)."""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from fedsa.algorithms.lowrank import lora_layers
from fedsa.cli import main
from fedsa.config.load import load_config
from fedsa.core.params import equal, nbytes, select
from fedsa.core.slots import A, B
from fedsa.engine.checkpoint import KILL_ENV
from fedsa.engine.prepare import Federation, prepare
from fedsa.engine.simulation import ClientEvent, run_rounds
from tests.test_resume import _cli, assert_same_run

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"
NEW = ["rolora", "flora", "fedex-lora", "flexlora", "fedsvd", "fed-alora", "fedrot-lora"]


def traced(*overrides: str) -> tuple[Federation, list[ClientEvent], list[dict[str, object]]]:
    fed = prepare(load_config(TINY, list(overrides)))
    events: list[ClientEvent] = []
    state, _, history = run_rounds(fed, on_client=events.append)
    events_final = ClientEvent(0, "final", state.sent_to("0"), {}, events[0].result, state.base)
    return fed, [*events, events_final], history  # type: ignore[list-item]


def received(events: list[ClientEvent], rnd: int) -> dict[str, torch.Tensor]:
    """What clients received at the start of round ``rnd`` (0: the final state)."""
    return next(e.received_shared for e in events if e.round == rnd)


def test_rolora_trains_one_factor_a_round_b_first_at_half_fedits_bytes() -> None:
    fed, events, history = traced("algorithm=rolora", "federation.rounds=4")
    layout = fed.layout
    a_names = layout.names(frozenset({A}), layout.shared)
    b_names = layout.names(frozenset({B}), layout.shared)
    states = [received(events, t) for t in (1, 2, 3, 4)] + [received(events, 0)]
    for t in range(1, 5):
        before, after = states[t - 1], states[t]
        changed, fixed = (b_names, a_names) if t % 2 == 1 else (a_names, b_names)
        assert equal(select(after, fixed), select(before, fixed)), f"round {t}: frozen moved"
        assert not any(torch.equal(after[n], before[n]) for n in changed), f"round {t}"
        for e in (e for e in events if e.round == t):
            assert set(e.result.upload) == set(changed)
    assert all(torch.count_nonzero(states[0][n]) == 0 for n in b_names)  # B starts at zero
    _, _, fedit = traced("algorithm=fedit", "federation.rounds=4")
    for ro, fi in zip(history, fedit, strict=True):
        assert 2 * ro["bytes_up"] == fi["bytes_up"]  # type: ignore[operator]


@pytest.mark.parametrize("period", [1, 2])
def test_fedsvd_a_has_orthonormal_rows_after_each_refactorisation(period: int) -> None:
    fed, events, _ = traced(
        "algorithm=fedsvd", "federation.rounds=4", f"fedsvd.svd_period={period}"
    )
    layers = lora_layers(fed.layout.slots)
    for e in events[:-1]:
        assert {fed.layout.slots[n] for n in e.result.upload} == {B}  # uploads hold only B
    for t in range(1, 5):
        after = received(events, t + 1 if t < 4 else 0)
        for layer in layers:
            a = after[layer.a].double()
            eye = torch.eye(a.shape[0], dtype=torch.float64)
            if t % period == 0:
                torch.testing.assert_close(a @ a.T, eye, atol=1e-5, rtol=0)
            else:  # between re-factorisations A stays what it was
                assert torch.equal(after[layer.a], received(events, t)[layer.a])
                if t < period:  # PEFT's initial A is not orthonormal: the test can tell
                    assert not torch.allclose(a @ a.T, eye, atol=1e-3)


def _layer_sizes(fed: Federation) -> list[tuple[int, int, int]]:
    """(d_out m, d_in n, r) of every adapted layer."""
    shared = fed.init_shared
    return [
        (shared[la.b].shape[0], shared[la.a].shape[1], shared[la.a].shape[0])
        for la in lora_layers(fed.layout.slots)
    ]


def _wire_bytes(sizes: list[tuple[int, int, int]], clients: int) -> int:
    """A base change of ``clients`` rank-r factors: factored when smaller, else dense."""
    return sum(4 * min(clients * r * (m + n), m * n) for m, n, r in sizes)


@pytest.mark.parametrize("clients", [3, 4])
def test_flora_downlink_grows_with_the_number_of_clients(clients: int) -> None:
    fed, events, history = traced("algorithm=flora", f"data.num_clients={clients}")
    sizes = _layer_sizes(fed)
    for e in events[:-1]:
        extra = history[e.round - 1]["bytes_down_per_client"][e.client] - nbytes(e.received_shared)  # type: ignore[index]
        # round 1: nothing merged yet; round 2: the stacks, sum_k r_k (m + n) numbers per layer
        assert extra == (0 if e.round == 1 else sum(4 * clients * r * (m + n) for m, n, r in sizes))


@pytest.mark.parametrize("rank", [4, 8])
def test_fedex_residual_is_counted_in_the_form_sent(rank: int) -> None:
    """Partial participation: a client that took part in the last round receives the last
    residual (factored when ``K r (m + n) < m n``, else dense); one further behind receives the
    changed weights dense; the bookkeeping here is independent of the engine's."""
    fed, events, history = traced(
        "algorithm=fedex-lora",
        f"adapter.r={rank}",
        "data.num_clients=4",
        "federation.clients_per_round=2",
        "federation.rounds=5",
    )
    sizes = _layer_sizes(fed)
    dense = sum(4 * m * n for m, n, _ in sizes)
    held: dict[str, int] = defaultdict(int)  # the round of the base each client holds
    for t in range(1, 6):
        rec = history[t - 1]
        for c in rec["participants"]:  # type: ignore[attr-defined]
            e = next(e for e in events if e.round == t and e.client == c)
            extra = rec["bytes_down_per_client"][c] - nbytes(e.received_shared)  # type: ignore[index]
            last = t - 1  # every round changes the base
            if held[c] == last:
                want = 0
            elif held[c] == last - 1:
                want = _wire_bytes(sizes, len(history[last - 1]["accepted"]))  # type: ignore[arg-type]
            else:
                want = dense
            assert extra == want, (t, c, held[c])
            held[c] = last
    assert rank == 4 or _wire_bytes(sizes, 2) == dense  # r = 8: the dense form is the smaller


HETERO = ["fedsa-lora", "hetlora", "flexlora", "flora", "florist"]
"""The methods that take ``adapter.client_ranks``: resumed with ranks [2, 4, 8] too."""


RANKS = ["adapter.client_ranks=[2, 4, 8]", "adapter.alpha=12.0"]
PRUNE = ["hetlora.prune_gamma=0.5", "hetlora.prune_threshold=0.999"]  # every round prunes


@pytest.mark.parametrize(
    ("algorithm", "extra"),
    [(a, []) for a in NEW] + [(a, RANKS) for a in HETERO] + [("hetlora", RANKS + PRUNE)],
    ids=[*NEW, *(f"{a}-ranks" for a in HETERO), "hetlora-ranks-pruning"],
)
def test_every_new_method_resumes_bitwise_after_sigkill(
    algorithm: str, extra: list[str], tmp_path: Path
) -> None:
    """Killed while writing round 3's checkpoint (RoLoRA: an odd, B round), resumed from round
    2's: tensors, server state (base changes, rule state, per-client factors of other ranks) and
    metrics equal an uninterrupted run."""
    args = [
        str(TINY),
        f"algorithm={algorithm}",
        "federation.rounds=4",
        "data.num_clients=4",
        "federation.clients_per_round=3",
        *extra,
    ]
    ref = tmp_path / "reference"
    assert main(["run", *args, "--out", str(ref)]) == 0
    out = tmp_path / "run"
    proc = _cli("run", *args, "--out", str(out), env={KILL_ENV: "3"})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    assert main(["run", "--resume", str(out)]) == 0
    assert_same_run(ref, out)
