"""Performance options of the engine: bf16 autocast, participant-only evaluation, length grouping.

The bf16 path is the GPU path (``precision = "auto"`` picks it on CUDA); CPU supports bf16
autocast too, so it is exercised here without a GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import fedsa.engine.train
from fedsa.config.load import load_config
from fedsa.core.device import autocast_dtype
from fedsa.core.errors import ConfigError
from fedsa.core.params import nbytes
from fedsa.engine.prepare import prepare
from fedsa.engine.simulation import ClientEvent, run_rounds

TINY = Path(__file__).parents[1] / "configs" / "tiny.toml"


def test_precision_resolution() -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("auto", cpu) is None  # CPU runs stay fp32 unless asked
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="precision = 'auto'"):
            autocast_dtype("bf16", torch.device("cuda"))
    with pytest.raises(ConfigError, match="allowed: auto, bf16, fp32"):
        load_config(TINY, ["precision=fp16"])


def _run(
    *overrides: str, watch: bool = False
) -> tuple[list[dict[str, Any]], list[ClientEvent], set[torch.dtype], Any]:
    cfg = load_config(TINY, ["federation.rounds=2", "adapter.dropout=0.0", *overrides])
    fed = prepare(cfg)
    seen: set[torch.dtype] = set()
    if watch:  # the dtype an adapted attention projection computes in while training
        layer = next(m for n, m in fed.model.named_modules() if n.endswith("query.base_layer"))
        layer.register_forward_hook(
            lambda mod, inp, out: seen.add(out.dtype) if mod.training else None
        )
    events: list[ClientEvent] = []
    _, _, history = run_rounds(fed, on_client=events.append)
    return history, events, seen, fed


def test_bf16_autocast_round_keeps_adapters_fp32_and_loss_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    optimizers: list[torch.optim.Optimizer] = []
    make = fedsa.engine.train.make_optimizer

    def recording(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        opt = make(*args, **kwargs)
        optimizers.append(opt)
        return opt

    monkeypatch.setattr(fedsa.engine.train, "make_optimizer", recording)
    ref, _, ref_seen, _ = _run(watch=True)
    low, events, low_seen, fed = _run("precision=bf16", watch=True)
    assert ref_seen == {torch.float32}
    assert low_seen == {torch.bfloat16}  # autocast was really on while training
    # Parameters, optimizer moments, uploads and private state all stay fp32.
    assert {p.dtype for p in fed.model.parameters()} == {torch.float32}
    states = [s for opt in optimizers for s in opt.state.values()]
    assert states and {v.dtype for s in states for v in s.values() if v.dim() > 0} == {
        torch.float32
    }
    for e in events:
        tensors = {**e.result.upload, **e.result.private}
        assert {t.dtype for t in tensors.values()} == {torch.float32}
    assert nbytes(events[0].result.upload) == nbytes(fed.init_shared)
    for a, b in zip(ref, low, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.05)
        assert b["eval"]["loss_mean"] == pytest.approx(a["eval"]["loss_mean"], rel=0.05)
    assert ref[-1]["train_loss"] != low[-1]["train_loss"]  # not silently the fp32 path


def test_participant_evaluation() -> None:
    common = ["data.num_clients=5", "federation.clients_per_round=2"]
    part, _, _, _ = _run(*common, "eval.clients=participants")
    assert all(set(r["eval"]["clients"]) == set(r["participants"]) for r in part)
    assert all(0 <= r["eval_s"] <= r["wall_s"] for r in part)
    full, _, _, _ = _run(*common)
    assert all(len(r["eval"]["clients"]) == 5 for r in full)
    for a, b in zip(part, full, strict=True):  # training is unaffected by whom we evaluate
        assert a["train_loss"] == b["train_loss"]
        for cid, metrics in a["eval"]["clients"].items():
            assert metrics == b["eval"]["clients"][cid]


def test_length_grouping_is_reproducible_and_trains() -> None:
    a, ea, _, _ = _run("federation.group_by_length=true")
    b, eb, _, _ = _run("federation.group_by_length=true")
    plain, _, _, _ = _run()
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    for x, y in zip(ea, eb, strict=True):
        assert all(torch.equal(v, y.result.upload[k]) for k, v in x.result.upload.items())
    assert [r["train_loss"] for r in a] != [r["train_loss"] for r in plain]  # other batches
