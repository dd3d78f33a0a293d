"""FedDPA: the global adapter is averaged, the local one never leaves the client, and the
instance-wise combination at inference does what the paper says."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from peft.tuners.lora import LoraLayer

from fedsa.algorithms.feddpa import LOCAL_ADAPTER, instance_weights, set_mix, training_mix
from fedsa.config.load import load_config
from fedsa.core.errors import ConfigError
from fedsa.core.params import equal
from fedsa.core.slots import A_LOCAL, B_LOCAL
from fedsa.engine.prepare import prepare
from fedsa.engine.simulation import ClientEvent, run_rounds

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"


def _run(*overrides: str) -> tuple[object, list[ClientEvent], dict[str, torch.Tensor]]:
    cfg = load_config(TINY, ["algorithm=feddpa", "optim.lr=0.01", *overrides])
    fed = prepare(cfg)
    events: list[ClientEvent] = []
    state, _, _ = run_rounds(fed, on_client=events.append)
    shared = state.shared
    return fed, events, shared


def test_global_is_shared_and_local_never_leaves_the_client() -> None:
    fed, events, shared = _run()
    local = [n for n, s in fed.layout.slots.items() if s in (A_LOCAL, B_LOCAL)]  # type: ignore[attr-defined]
    assert len(local) == 8 and all(f".{LOCAL_ADAPTER}." in n for n in local)
    for e in events:
        assert not set(local) & set(e.result.upload)
        assert set(local) <= set(e.result.private)
    round2 = [e for e in events if e.round == 2]
    assert all(equal(e.received_shared, round2[0].received_shared) for e in round2)
    privs = [e.result.private for e in round2]
    assert any(not torch.equal(privs[0][n], privs[1][n]) for n in local)


def test_phases_train_global_then_local() -> None:
    fed, events, _ = _run("federation.local_steps=4")
    plan = fed.algorithm.schedule(fed.algorithm.trains, 1, fed.cfg)  # type: ignore[attr-defined]
    assert [p.steps for p in plan.phases] == [2, 2]
    layout = fed.layout  # type: ignore[attr-defined]
    first, second = (layout.names(p.slots, layout.trainable) for p in plan.phases)
    assert first and second
    assert all(f".{LOCAL_ADAPTER}." not in n for n in first)
    assert all(".lora_" not in n or f".{LOCAL_ADAPTER}." in n for n in second)
    e = events[0]
    moved_global = not equal(e.result.upload, e.received_shared)
    moved_local = any(
        not torch.equal(e.result.private[n], e.received_private[n])
        for n in e.result.private
        if f".{LOCAL_ADAPTER}." in n
    )
    assert moved_global and moved_local


def test_instance_weights_on_a_hand_made_case() -> None:
    refs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tests = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    # cosines: [1, 0] -> mean 0.5; [1/sqrt2, 1/sqrt2] -> mean 0.7071; [-1, 0] -> -0.5 (clipped)
    got = instance_weights(tests, refs, max_weight=0.5)
    expected = torch.tensor([0.25, 0.5 / math.sqrt(2), 0.0], dtype=torch.float64)
    assert torch.allclose(got, expected)


def test_mix_scales_each_adapter() -> None:
    fed = prepare(load_config(TINY, ["algorithm=feddpa", "adapter.r=4", "adapter.alpha=8"]))
    layers = [m for m in fed.model.modules() if isinstance(m, LoraLayer)]
    assert all(m.active_adapters == ["default", LOCAL_ADAPTER] for m in layers)
    assert all(m.scaling == {"default": 1.0, LOCAL_ADAPTER: 1.0} for m in layers)  # 0.5 * 8/4
    set_mix(fed.model, 0.25, 0.75)
    assert all(m.scaling == {"default": 0.5, LOCAL_ADAPTER: 1.5} for m in layers)
    assert training_mix(fed.cfg.feddpa) == (0.5, 0.5)
    cfg_sum = load_config(TINY, ["algorithm=feddpa", "feddpa.combination=sum"])
    assert training_mix(cfg_sum.feddpa) == (1.0, 1.0)


def test_mix_zero_local_equals_global_only_output() -> None:
    """With the local weight 0 the model is the global adapter alone, whatever the local holds."""
    fed = prepare(load_config(TINY, ["algorithm=feddpa"]))
    model = fed.model
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.normal_()
    model.eval()
    batch = {"input_ids": torch.tensor([[2, 7, 9, 3]])}
    set_mix(model, 1.0, 0.0)
    a = model(**batch).logits
    with torch.no_grad():
        for n, p in model.named_parameters():
            if f".{LOCAL_ADAPTER}." in n:
                p.add_(1.0)
    b = model(**batch).logits
    assert torch.equal(a, b)


def test_sum_combination_runs_and_vera_is_refused() -> None:
    _, events, _ = _run("feddpa.combination=sum")
    assert events
    with pytest.raises(ConfigError, match="does not support adapter.variant"):
        load_config(TINY, ["algorithm=feddpa", "adapter.variant=vera"])
