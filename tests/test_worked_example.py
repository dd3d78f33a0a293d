"""The worked example of ``docs/architecture.md``: a server rule with its golden test.

Server momentum (FedAvgM, Hsu et al., arXiv 1909.06335) on FedSA-LoRA's shared A: the server keeps
a velocity per shared tensor as its state. The doc quotes this file's rule and test verbatim; the
last test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from fedsa.algorithms.basic import FEDSA_LORA
from fedsa.algorithms.hooks import ServerContext, ServerOutput, Upload
from fedsa.algorithms.rules import weighted_mean_rule

BETA = 0.9


def server_momentum(uploads: Sequence[Upload], ctx: ServerContext) -> ServerOutput:
    """FedAvgM: ``v <- beta v + (mean - x)``, ``x <- x + v`` for every shared tensor x."""
    mean = weighted_mean_rule(uploads, ctx).shared
    shared, velocity = {}, {}
    for name, x in ctx.shared.items():
        v = BETA * ctx.state.get(name, torch.zeros_like(x)) + (mean[name] - x)
        velocity[name], shared[name] = v, x + v
    return ServerOutput(shared=shared, state=velocity)


FEDSA_MOMENTUM = dataclasses.replace(
    FEDSA_LORA,
    name="fedsa-lora-momentum",
    summary="FedSA-LoRA with server momentum on A (FedAvgM)",
    paper="Hsu et al., Measuring the Effects of Non-Identical Data Distribution, arXiv 1909.06335",
    server_rule=server_momentum,
)


def _ctx(shared: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> ServerContext:
    return ServerContext(1, None, shared, state, {}, 1.0, ["0", "1"])  # type: ignore[arg-type]


def test_server_momentum_golden_values() -> None:
    x = {"a": torch.tensor([1.0])}
    ups = [
        Upload("0", {"a": torch.tensor([2.0])}, 1.0, x),
        Upload("1", {"a": torch.tensor([4.0])}, 3.0, x),
    ]
    r1 = server_momentum(ups, _ctx(x, {}))  # mean 3.5: v = 0.9 * 0 + 2.5, x = 3.5
    assert (r1.shared["a"].item(), r1.state["a"].item()) == pytest.approx((3.5, 2.5))
    same = [Upload(u.client, r1.shared, u.weight, r1.shared) for u in ups]
    r2 = server_momentum(same, _ctx(r1.shared, r1.state))  # mean 3.5: v = 2.25, x = 5.75
    assert (r2.shared["a"].item(), r2.state["a"].item()) == pytest.approx((5.75, 2.25))


def test_server_momentum_runs_in_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedsa.algorithms.registry import ALGORITHMS
    from fedsa.config.load import load_config
    from fedsa.engine.prepare import prepare
    from fedsa.engine.simulation import ClientEvent, run_rounds

    monkeypatch.setitem(ALGORITHMS, FEDSA_MOMENTUM.name, FEDSA_MOMENTUM)
    tiny = Path(__file__).parents[1] / "configs" / "tiny.toml"
    fed = prepare(load_config(tiny, [f"algorithm={FEDSA_MOMENTUM.name}", "federation.rounds=1"]))
    events: list[ClientEvent] = []
    state, _, _ = run_rounds(fed, on_client=events.append)
    sizes = [len(fed.client_train[int(e.client)]) for e in events]
    for name, x in fed.init_shared.items():  # round 1: v = mean - x, so x + v is the mean
        mean = sum(w * e.result.upload[name].double() for w, e in zip(sizes, events, strict=True))
        assert torch.allclose(state.shared[name].double(), mean / sum(sizes), atol=1e-6)
        assert torch.allclose(state.rule[name].double(), mean / sum(sizes) - x.double(), atol=1e-6)


def test_the_doc_quotes_this_example() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    assert inspect.getsource(server_momentum) in doc
    assert inspect.getsource(test_server_momentum_golden_values) in doc
