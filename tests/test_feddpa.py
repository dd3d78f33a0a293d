"""FedDPA: the global adapter is averaged, the local one never leaves the client, and the
instance-wise combination at inference does what the paper says."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from peft.tuners.lora import LoraLayer

from fedsa.algorithms.feddpa import (
    LOCAL_ADAPTER,
    evaluate_instance_wise,
    instance_weights,
    reference_indices,
    representations,
    set_mix,
    training_mix,
)
from fedsa.algorithms.hooks import ClientEval
from fedsa.config.load import load_config
from fedsa.core.errors import ConfigError
from fedsa.core.params import equal
from fedsa.core.slots import A_LOCAL, B_LOCAL
from fedsa.engine.prepare import prepare
from fedsa.engine.simulation import ClientEvent, run_rounds
from fedsa.tasks.batching import collate

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


def test_instance_wise_scores_are_those_of_all_predictions_together() -> None:
    """Balanced accuracy and macro-F1 under per-input mixes come from every prediction at once.

    The defect this rules out: scoring each input alone and averaging the one-input scores,
    which makes both equal to accuracy. The reference predicts each input by hand, with its own
    mix, and scores the predictions with scikit-learn.
    """
    from sklearn.metrics import balanced_accuracy_score, f1_score

    fed = prepare(load_config(TINY, ["algorithm=feddpa", "data.dirichlet_alpha=5.0"]))
    model, task, cfg = fed.model, fed.scorer, fed.cfg
    torch.manual_seed(3)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.normal_(std=0.5)
    k = 0
    train, evals = fed.client_train[k], fed.client_eval[k]
    before = _scalings(model)
    got = evaluate_instance_wise(ClientEval(model, task, k, train, evals, cfg))
    assert _scalings(model) == before  # the training mix is back

    refs = reference_indices(train, cfg.feddpa.num_references, cfg.seed, k)
    dev, trainset = task.inputs("dev"), task.inputs("train")
    a = instance_weights(
        representations(model, dev, evals, 4, torch.device("cpu")),
        representations(model, trainset, refs, 4, torch.device("cpu")),
        cfg.feddpa.max_weight,
    )
    preds = []
    with torch.inference_mode():
        for i, w in zip(evals, a.tolist(), strict=True):
            set_mix(model, 1.0 - w, w)
            batch = {k: v for k, v in collate(dev, [i]).items() if k != "labels"}
            preds.append(int(model(**batch).logits.argmax(dim=-1)))
    labels = [int(dev.labels[i]) for i in evals]
    accuracy = sum(p == y for p, y in zip(preds, labels, strict=True)) / len(evals)
    assert got["accuracy"] == pytest.approx(accuracy)
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, preds))
    assert got["macro_f1"] == pytest.approx(f1_score(labels, preds, average="macro"))
    assert abs(got["balanced_accuracy"] - got["accuracy"]) > 1e-3  # the defect would equal them
    assert got["n"] == len(evals)


def _scalings(model: torch.nn.Module) -> list[dict[str, float]]:
    """Every LoRA layer's per-adapter scale (what :func:`set_mix` sets)."""
    return [dict(m.scaling) for m in model.modules() if isinstance(m, LoraLayer)]
